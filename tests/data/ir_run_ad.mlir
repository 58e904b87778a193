// Input of tests/test_ir_run.py: enzyme.fwddiff and enzyme.autodiff requests in
// Enzyme-MLIR's syntax, run with `isozyme run`.

// f(x, y) = x * x * y + sin(x)
func.func private @f(%x: f64, %y: f64) -> f64 {
  %xx = arith.mulf %x, %x : f64
  %xxy = arith.mulf %xx, %y : f64
  %s = math.sin %x : f64
  %r = arith.addf %xxy, %s : f64
  func.return %r : f64
}

// the derivative of f at (x, y) in the direction (dx, dy)
func.func @tangent(%x: f64, %dx: f64, %y: f64, %dy: f64) -> f64 {
  %t = enzyme.fwddiff @f(%x, %dx, %y, %dy) {activity=[#enzyme<activity enzyme_dup>, #enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]} : (f64, f64, f64, f64) -> f64
  func.return %t : f64
}

// f(x, y) and its gradient (df/dx, df/dy)
func.func @gradient(%x: f64, %y: f64) -> (f64, f64, f64) {
  %seed = arith.constant 1.0 : f64
  %g:3 = enzyme.autodiff @f(%x, %y, %seed) {activity=[#enzyme<activity enzyme_active>, #enzyme<activity enzyme_active>], ret_activity=[#enzyme<activity enzyme_active>]} : (f64, f64, f64) -> (f64, f64, f64)
  func.return %g#0, %g#1, %g#2 : f64, f64, f64
}

// sum of a[i]^3 over a buffer, in a loop
func.func private @sumcubes(%a: memref<?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %n = memref.dim %a, %c0 : memref<?xf64>
  %s = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
    %v = memref.load %a[%i] : memref<?xf64>
    %v2 = arith.mulf %v, %v : f64
    %v3 = arith.mulf %v2, %v : f64
    %next = arith.addf %acc, %v3 : f64
    scf.yield %next : f64
  }
  func.return %s : f64
}

// the gradient of sumcubes, added into the shadow %da
func.func @grad_sumcubes(%a: memref<?xf64>, %da: memref<?xf64>) {
  %seed = arith.constant 1.0 : f64
  enzyme.autodiff @sumcubes(%a, %da, %seed) {activity=[#enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (memref<?xf64>, memref<?xf64>, f64) -> ()
  func.return
}
