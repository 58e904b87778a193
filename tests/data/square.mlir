func.func private @square(%x: f64) -> f64 {
  %y = arith.mulf %x, %x : f64
  func.return %y : f64
}
func.func @dsquare(%x: f64, %dx: f64) -> f64 {
  %r = enzyme.fwddiff @square(%x, %dx) {activity=[#enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]} : (f64, f64) -> f64
  func.return %r : f64
}
