/**
 * Replacement wasm `BatchMatMul` / `_FusedMatMul` kernels that avoid the stock
 * kernels' slow transposed code path. A transposed operand is materialised
 * with the stock wasm `Transpose` kernel (a cheap O(n) copy) and the ORIGINAL
 * stock matmul kernel is then called with both transpose flags false.
 *
 * The stock C++ only has a fast (XNNPACK) path for an untransposed matmul
 * whose batch dimensions are all 1; anything else runs a naive blocked loop
 * whether or not we transpose first. So batched (batch > 1) calls are passed
 * through unchanged: an explicit transpose there costs time and gains nothing.
 *
 * The originals are captured by `createNoTransposeMatMulConfig` before the
 * stock registration is replaced (see register-wasm-kernels.ts); their
 * `setupFunc` is kept so `tf.setBackend('wasm')` still initialises them.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

interface MatMulArgs {
  /** `a`, `b`, plus `bias` / `preluActivationWeights` for _FusedMatMul. */
  inputs: { a: tf.TensorInfo; b: tf.TensorInfo; [extra: string]: tf.TensorInfo | undefined };
  backend: BackendWasm;
  attrs: tf.NamedAttrMap & { transposeA: boolean; transposeB: boolean };
}

/** An operand prepared for the matmul, plus how to release it afterwards. */
interface Operand {
  info: tf.TensorInfo;
  release: () => void;
}

const noop = (): void => {};

/**
 * A zero-copy view of `x` with a new `shape` under a FRESH wasm tensor id.
 *
 * Why not just reuse x's dataId with another shape (as Reshape does)? The stock
 * C++ matmul caches its packed-weights XNNPACK operator per `b` tensor id and
 * ignores the shape, so one id seen as `b` with two different shapes silently
 * yields wrong results. A fresh id (released right after use, which also drops
 * any cached operator) cannot collide. Release with `releaseWasmAlias`, never
 * with `disposeData` (that would free x's memory).
 */
export function createWasmAlias(backend: BackendWasm, x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return backend.makeOutput(shape, x.dtype, backend.getMemoryOffset(x.dataId));
}

/** Unregisters an alias made by `createWasmAlias` without freeing the memory. */
export function releaseWasmAlias(backend: BackendWasm, alias: tf.TensorInfo): void {
  const data = backend.dataIdMap.get(alias.dataId);
  if (data == null) return;
  backend.dataIdMap.delete(alias.dataId);
  backend.wasm.tfjs.disposeData(data.id);
}

function swapLastTwo(shape: readonly number[]): number[] {
  const out = shape.slice();
  const r = out.length;
  [out[r - 2], out[r - 1]] = [out[r - 1], out[r - 2]];
  return out;
}

/** Product of all but the two innermost dimensions. */
function batchSize(x: tf.TensorInfo): number {
  return x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
}

/** Returns `x` with its two innermost dimensions transposed (materialised). */
function transposeInner(x: tf.TensorInfo, backend: BackendWasm): Operand {
  const rank = x.shape.length;
  if (rank < 2) {
    throw new Error(`BatchMatMul(wasm): operands must have rank >= 2, got [${x.shape}]`);
  }
  const rows = x.shape[rank - 2];
  const cols = x.shape[rank - 1];
  if (rows === 1 || cols === 1) {
    // Swapping a unit dimension does not move any element: reinterpret only.
    const alias = createWasmAlias(backend, x, swapLastTwo(x.shape));
    return { info: alias, release: () => releaseWasmAlias(backend, alias) };
  }
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (transpose == null) {
    throw new Error("BatchMatMul(wasm): kernel 'Transpose' is not registered for 'wasm'");
  }
  const perm = x.shape.map((_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  const info = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
  return { info, release: () => backend.disposeData(info.dataId) };
}

/**
 * Wraps an original matmul kernel function (BatchMatMul or _FusedMatMul, both
 * take inputs `a`, `b` and attrs `transposeA`, `transposeB`) so that it is
 * only ever called without transpose flags.
 */
export function withoutTransposeFlags(original: tf.KernelFunc): tf.KernelFunc {
  const kernelFunc = (args: MatMulArgs): tf.TensorInfo | tf.TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const { transposeA, transposeB } = attrs;
    const { a, b } = inputs;
    if ((!transposeA && !transposeB) || batchSize(a) !== 1 || batchSize(b) !== 1) {
      return original(args as unknown as Parameters<tf.KernelFunc>[0]);
    }
    const prepared: Operand[] = [];
    try {
      const a2 = transposeA ? transposeInner(a, backend) : { info: a, release: noop };
      prepared.push(a2);
      const b2 = transposeB ? transposeInner(b, backend) : { info: b, release: noop };
      prepared.push(b2);
      return original({
        inputs: { ...inputs, a: a2.info, b: b2.info },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      } as unknown as Parameters<tf.KernelFunc>[0]);
    } finally {
      for (const op of prepared) op.release();
    }
  };
  return kernelFunc as unknown as tf.KernelFunc;
}

/**
 * Builds a replacement config for a stock wasm matmul kernel. `stock` must be
 * the config registered by @tensorflow/tfjs-backend-wasm (captured before it
 * is unregistered); its setupFunc/disposeFunc are carried over.
 */
export function createNoTransposeMatMulConfig(stock: tf.KernelConfig): tf.KernelConfig {
  if (stock.backendName !== 'wasm') {
    throw new Error(`createNoTransposeMatMulConfig: expected a wasm kernel, got '${stock.backendName}'`);
  }
  return {
    kernelName: stock.kernelName,
    backendName: 'wasm',
    kernelFunc: withoutTransposeFlags(stock.kernelFunc),
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  };
}
