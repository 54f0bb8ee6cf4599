;; float32 <-> float16 / bfloat16 for the gradients on the wire, eight elements at a time
;; (WebAssembly SIMD). Compiled to src/rpc/generated/half-codec-wasm.ts by scripts/gen-wasm.mjs.
;; src/rpc/tensor-codec.ts has the same rules in JavaScript; both give the same bits (tested).
;;
;; float16 encode (round to nearest even; a = |x| as bits, the sign goes back on at the end):
;;   a <  0x38800000 (below the smallest normal half, 2^-14): the subnormal half. Adding 0.5
;;                   in float32 puts the value's bits at the 2^-24 place, which is the subnormal
;;                   half's unit, rounded to nearest even by the addition itself; the low bits
;;                   of the sum are then the half (0x400 when it rounds up to the smallest normal).
;;   a <  0x477ff000 (below 65520, which rounds to infinity): the normal half, exponent rebased
;;                   by -112 and the 13 dropped bits rounded to nearest even.
;;   a <= 0x7f800000: infinity (overflow, or infinity itself).
;;   otherwise NaN:  0x7e00.
;; float16 decode: normal halves rebased by +112; subnormal ones as (0.5 + m*2^-24) - 0.5 in
;; float32 (exact); infinities keep their sign; every NaN becomes 0x7fc00000, as JavaScript
;; stores NaN.
;; bfloat16 encode: the upper 16 bits rounded to nearest even; a NaN keeps its upper bits with
;; the quiet bit set. Decode: the 16 bits become the upper half.
;;
;; `n` counts elements and is a multiple of 8; the caller pads its buffers to that size.
(module
  (memory (export "memory") 1)
  (func $half (param $x v128) (result v128)
    (local $a v128) (local $sub v128) (local $normal v128) (local $big v128) (local $r v128)
    (local.set $a (v128.and (local.get $x) (i32x4.splat (i32.const 0x7fffffff))))
    (local.set $sub
      (i32x4.sub (f32x4.add (local.get $a) (f32x4.splat (f32.const 0.5))) (i32x4.splat (i32.const 0x3f000000))))
    (local.set $normal
      (i32x4.shr_u
        (i32x4.add
          (i32x4.add (i32x4.sub (local.get $a) (i32x4.splat (i32.const 0x38000000))) (i32x4.splat (i32.const 0xfff)))
          (v128.and (i32x4.shr_u (local.get $a) (i32.const 13)) (i32x4.splat (i32.const 1))))
        (i32.const 13)))
    ;; infinity, or NaN above it
    (local.set $big
      (v128.bitselect (i32x4.splat (i32.const 0x7e00)) (i32x4.splat (i32.const 0x7c00))
        (i32x4.gt_u (local.get $a) (i32x4.splat (i32.const 0x7f800000)))))
    (local.set $r
      (v128.bitselect (local.get $normal) (local.get $big) (i32x4.lt_u (local.get $a) (i32x4.splat (i32.const 0x477ff000)))))
    (local.set $r
      (v128.bitselect (local.get $sub) (local.get $r) (i32x4.lt_u (local.get $a) (i32x4.splat (i32.const 0x38800000)))))
    (v128.or (local.get $r)
      (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x8000)))))
  (func $bfloat (param $x v128) (result v128)
    (local $rounded v128) (local $nan v128)
    (local.set $rounded
      (i32x4.shr_u
        (i32x4.add (i32x4.add (local.get $x) (i32x4.splat (i32.const 0x7fff)))
          (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 1))))
        (i32.const 16)))
    (local.set $nan (v128.or (i32x4.shr_u (local.get $x) (i32.const 16)) (i32x4.splat (i32.const 0x40))))
    (v128.bitselect (local.get $nan) (local.get $rounded)
      (i32x4.gt_u (v128.and (local.get $x) (i32x4.splat (i32.const 0x7fffffff))) (i32x4.splat (i32.const 0x7f800000)))))
  (func $float (param $h v128) (result v128)
    (local $a v128) (local $sign v128) (local $normal v128) (local $sub v128) (local $r v128)
    (local.set $a (v128.and (local.get $h) (i32x4.splat (i32.const 0x7fff))))
    (local.set $sign (i32x4.shl (v128.and (local.get $h) (i32x4.splat (i32.const 0x8000))) (i32.const 16)))
    (local.set $normal (i32x4.add (i32x4.shl (local.get $a) (i32.const 13)) (i32x4.splat (i32.const 0x38000000))))
    (local.set $sub
      (f32x4.sub (v128.or (local.get $a) (i32x4.splat (i32.const 0x3f000000))) (f32x4.splat (f32.const 0.5))))
    (local.set $r
      (v128.bitselect (local.get $sub) (local.get $normal) (i32x4.lt_u (local.get $a) (i32x4.splat (i32.const 0x400)))))
    ;; infinities keep the sign; NaN is 0x7fc00000 whatever its sign and payload
    (local.set $r
      (v128.or (local.get $sign)
        (v128.bitselect (i32x4.splat (i32.const 0x7f800000)) (local.get $r)
          (i32x4.eq (local.get $a) (i32x4.splat (i32.const 0x7c00))))))
    (v128.bitselect (i32x4.splat (i32.const 0x7fc00000)) (local.get $r)
      (i32x4.gt_u (local.get $a) (i32x4.splat (i32.const 0x7c00)))))
  ;; `kind` 0: float16, 1: bfloat16. src: n float32, dst: n 16-bit elements.
  (func (export "encode") (param $n i32) (param $src i32) (param $dst i32) (param $kind i32)
    (local $end i32) (local $lo v128) (local $hi v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $lo (v128.load (local.get $src)))
        (local.set $hi (v128.load offset=16 (local.get $src)))
        (if (local.get $kind)
          (then
            (local.set $lo (call $bfloat (local.get $lo)))
            (local.set $hi (call $bfloat (local.get $hi))))
          (else
            (local.set $lo (call $half (local.get $lo)))
            (local.set $hi (call $half (local.get $hi)))))
        (v128.store (local.get $dst) (i16x8.narrow_i32x4_u (local.get $lo) (local.get $hi)))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))
  ;; src: n 16-bit elements, dst: n float32.
  (func (export "decode") (param $n i32) (param $src i32) (param $dst i32) (param $kind i32)
    (local $end i32) (local $h v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $h (v128.load (local.get $src)))
        (if (local.get $kind)
          (then
            (v128.store (local.get $dst) (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $h)) (i32.const 16)))
            (v128.store offset=16 (local.get $dst) (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $h)) (i32.const 16))))
          (else
            (v128.store (local.get $dst) (call $float (i32x4.extend_low_i16x8_u (local.get $h))))
            (v128.store offset=16 (local.get $dst) (call $float (i32x4.extend_high_i16x8_u (local.get $h))))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $next)))))
