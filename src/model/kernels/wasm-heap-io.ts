/**
 * Synchronous, copy-free reads of float32 tensors that live in the wasm backend's heap.
 *
 * On wasm, `data()`/`dataSync()` copy a tensor out of the heap into a fresh array (garbage the
 * next GC must sweep: 2.8 MB of gradients per step for the reference CNN). The heap is ordinary
 * memory, so a caller that copies the values somewhere anyway (a flat gradient buffer) can read
 * them through a short-lived view instead. Views must be used at once: the heap can grow (and
 * detach older views) on the next allocation.
 *
 * `heapViewReader()` is the one place this fast path is chosen: it returns a reader only when the
 * active backend is the wasm backend; everywhere else (webgpu, tensorflow, cpu) callers keep the
 * generic asynchronous `data()` path.
 *
 * `withFloat64Accumulators` gives the kernels that sum in float64 their accumulators in the heap.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Returns a heap view of a float32 tensor's values, or undefined when it cannot (then use data()). */
export type HeapViewReader = (t: tf.Tensor) => Float32Array | undefined;

export function heapViewReader(): HeapViewReader | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as BackendWasm;
  if (typeof backend.typedArrayFromHeap !== 'function' || backend.dataIdMap == null) return undefined;
  return (t) => {
    if (t.dtype !== 'float32' || t.isDisposed || !backend.dataIdMap.has(t.dataId)) return undefined;
    return backend.typedArrayFromHeap(t) as Float32Array;
  };
}

/**
 * Runs `accumulate` with the byte offset of `count` float64 accumulators, zeroed, in a scratch
 * heap tensor (8-byte aligned), and returns their final values. The kernels that sum float32
 * columns in float64 (sum.ts, conv-relu-pool.ts) keep their sums there.
 */
export function withFloat64Accumulators(backend: BackendWasm, count: number, accumulate: (accBytes: number) => void): Float64Array {
  // count float64s, plus 4 bytes of slack to align them.
  const scratch = backend.makeOutput([2 * count + 1], 'float32');
  try {
    const base = backend.getMemoryOffset(scratch.dataId);
    const acc = base % 8 === 0 ? base : base + 4;
    // Views after the allocation (heap growth detaches older ones).
    const heap = () => (backend.typedArrayFromHeap(scratch) as Float32Array).buffer;
    new Float64Array(heap(), acc, count).fill(0);
    accumulate(acc);
    return new Float64Array(heap(), acc, count).slice();
  } finally {
    backend.disposeData(scratch.dataId);
  }
}

/**
 * In-place writes into float32 tensors in the wasm backend's heap (undefined on every other
 * backend). `view` gives the tensor's values as a short-lived view, as HeapViewReader does;
 * `sole` tells whether the tensor's memory is its alone (no other tensor shares the data);
 * `changed` tells the backend the values changed behind its back: the stock XNNPACK kernels
 * cache operands they packed under the tensor's id, so the id is dropped (running its disposal
 * callbacks, which free those caches) and registered again over the same memory.
 */
export interface HeapWriter {
  view: HeapViewReader;
  sole(t: tf.Tensor): boolean;
  changed(t: tf.Tensor): void;
}

export function heapWriter(): HeapWriter | undefined {
  const view = heapViewReader();
  if (!view) return undefined;
  const backend = tf.backend() as BackendWasm;
  if (typeof backend.wasm?.tfjs?.registerTensor !== 'function' || typeof backend.wasm.tfjs.disposeData !== 'function') return undefined;
  return {
    view,
    sole: (t) => !t.isDisposed && backend.dataIdMap.get(t.dataId)?.refCount === 1,
    changed: (t) => {
      const data = backend.dataIdMap.get(t.dataId);
      if (data == null || data.memoryOffset == null) return;
      backend.wasm.tfjs.disposeData(data.id);
      backend.wasm.tfjs.registerTensor(data.id, t.size, data.memoryOffset);
    },
  };
}
