;; A parameter-server shard's per-step work over float32 buffers, four lanes at a time
;; (WebAssembly SIMD). Compiled to src/ps/generated/shard-kernel-wasm.ts by scripts/gen-wasm.mjs
;; (npm run gen). src/ps/shard-kernel.ts has the same rules in JavaScript, bitwise equal.
;;
;; accumulate: acc = scale * x (first) or acc + scale * x, and whether x holds NaN or +-Inf;
;; subnormal x count as 0.
;;
;; adam:
;;   g = sum / total                        then 0 if |g| < 2^-56
;;   m = beta1 * m + (1 - beta1) * g        then 0 if |m| < 2^-126
;;   v = beta2 * v + ((1 - beta2) * g) * g  then 0 if |v| < 2^-126
;; The flushes matter for speed: x86 computes on subnormal floats through microcode assists,
;; ~100x slower, and training makes them. A weight whose gradient stays zero (MNIST's blank
;; border pixels) decays m by beta1 every step into subnormals within ~800 steps (the commit
;; went from 2.3 to 9 ms mid-epoch), and gradients of 1e-20 made a commit 5x slower, subnormal
;; ones 17x. TensorFlow's CPU kernels run with flush-to-zero for the same reason. The effect
;; on a weight is below 1e-13 of its size.
;;   w = w - (lr * (m * c1)) / (sqrt(v * c2) + epsilon)
;;
;; `n` counts floats and is a multiple of 4; the caller pads every buffer to that size.
(module
  (memory (export "memory") 1)
  (func (export "accumulate")
    (param $n i32) (param $acc i32) (param $x i32) (param $scale f32) (param $first i32) (result i32)
    (local $end i32) (local $S v128) (local $bad v128) (local $xv v128) (local $e v128) (local $EXP v128)
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $S (f32x4.splat (local.get $scale)))
    (local.set $EXP (i32x4.splat (i32.const 0x7f800000)))
    (local.set $bad (i32x4.splat (i32.const 0)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $acc) (local.get $end)))
        (local.set $xv (v128.load (local.get $x)))
        ;; Integer tests on the exponent bits (no float arithmetic on odd values): all ones is
        ;; NaN or +-Inf; all zeros is a zero or a subnormal, which becomes +0.
        (local.set $e (v128.and (local.get $xv) (local.get $EXP)))
        (local.set $bad (v128.or (local.get $bad) (i32x4.eq (local.get $e) (local.get $EXP))))
        (local.set $xv (v128.andnot (local.get $xv) (i32x4.eq (local.get $e) (i32x4.splat (i32.const 0)))))
        (if (local.get $first)
          (then (v128.store (local.get $acc) (f32x4.mul (local.get $S) (local.get $xv))))
          (else (v128.store (local.get $acc)
            (f32x4.add (v128.load (local.get $acc)) (f32x4.mul (local.get $S) (local.get $xv))))))
        (local.set $acc (i32.add (local.get $acc) (i32.const 16)))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (br $next)))
    (v128.any_true (local.get $bad)))
  (func (export "adam")
    (param $n i32) (param $w i32) (param $g i32) (param $m i32) (param $v i32)
    (param $total f32) (param $beta1 f32) (param $b1c f32) (param $beta2 f32) (param $b2c f32)
    (param $lr f32) (param $c1 f32) (param $c2 f32) (param $eps f32)
    (local $end i32)
    (local $TOTAL v128) (local $B1 v128) (local $B1C v128) (local $B2 v128) (local $B2C v128)
    (local $LR v128) (local $C1 v128) (local $C2 v128) (local $EPS v128)
    (local $gi v128) (local $mi v128) (local $vi v128) (local $TINY v128)
    (local.set $end (i32.add (local.get $w) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $TOTAL (f32x4.splat (local.get $total)))
    (local.set $B1 (f32x4.splat (local.get $beta1)))
    (local.set $B1C (f32x4.splat (local.get $b1c)))
    (local.set $B2 (f32x4.splat (local.get $beta2)))
    (local.set $B2C (f32x4.splat (local.get $b2c)))
    (local.set $LR (f32x4.splat (local.get $lr)))
    (local.set $C1 (f32x4.splat (local.get $c1)))
    (local.set $C2 (f32x4.splat (local.get $c2)))
    (local.set $EPS (f32x4.splat (local.get $eps)))
    (local.set $TINY (f32x4.splat (f32.const 0x1p-126)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $gi (f32x4.div (v128.load (local.get $g)) (local.get $TOTAL)))
        ;; |g| < 2^-56 (exponent field below 71) becomes +0, so that (1 - beta2) * g * g stays
        ;; a normal float or zero.
        (local.set $gi (v128.andnot (local.get $gi)
          (i32x4.lt_u (v128.and (local.get $gi) (i32x4.splat (i32.const 0x7f800000))) (i32x4.splat (i32.const 0x23800000)))))
        (local.set $mi
          (f32x4.add (f32x4.mul (local.get $B1) (v128.load (local.get $m)))
                     (f32x4.mul (local.get $B1C) (local.get $gi))))
        ;; Subnormal moments flush to zero (see below).
        (local.set $mi (v128.and (local.get $mi) (f32x4.ge (f32x4.abs (local.get $mi)) (local.get $TINY))))
        (v128.store (local.get $m) (local.get $mi))
        (local.set $vi
          (f32x4.add (f32x4.mul (local.get $B2) (v128.load (local.get $v)))
                     (f32x4.mul (f32x4.mul (local.get $B2C) (local.get $gi)) (local.get $gi))))
        (local.set $vi (v128.and (local.get $vi) (f32x4.ge (f32x4.abs (local.get $vi)) (local.get $TINY))))
        (v128.store (local.get $v) (local.get $vi))
        (v128.store (local.get $w)
          (f32x4.sub (v128.load (local.get $w))
            (f32x4.div
              (f32x4.mul (local.get $LR) (f32x4.mul (local.get $mi) (local.get $C1)))
              (f32x4.add (f32x4.sqrt (f32x4.mul (local.get $vi) (local.get $C2))) (local.get $EPS)))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $g (i32.add (local.get $g) (i32.const 16)))
        (local.set $m (i32.add (local.get $m) (i32.const 16)))
        (local.set $v (i32.add (local.get $v) (i32.const 16)))
        (br $next)))))
