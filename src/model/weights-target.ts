/**
 * Where a worker's weights land as they arrive, slice by slice, from the parameter-server
 * shards: bytes at offsets of the flat layout (variables.ts), then one `load()` once every
 * slice of a version is in, before the model computes with them.
 *
 * - On wasm (`heapWriter()`, the one place that choice is made) the bytes are written straight
 *   into the variables' own memory in the backend's heap: no flat buffer, no new tensors, no
 *   copy into the model. `load()` only tells the backend the values changed (kernels that cache
 *   packed operands by tensor id drop those caches).
 * - Everywhere else they are gathered in a flat buffer and assigned to the variables at `load()`
 *   (assignWeights), as for weights from the coordinator.
 *
 * Between writes and `load()` the model's weights are a mix of versions: `stale` says so, and a
 * caller must not compute until it has loaded a complete version again.
 */
import * as tf from '@tensorflow/tfjs';
import { LayoutMismatchError } from './errors.js';
import { heapWriter, type HeapWriter } from './kernels/wasm-heap-io.js';
import { assignWeights, type VariableLayout } from './variables.js';

export interface WeightsTarget {
  /** Floats in the flat layout. */
  readonly size: number;
  /** True from the first write after a `load()` until the next one. */
  readonly stale: boolean;
  /** Writes `bytes` (whole floats) at byte `at` of the flat layout. */
  write(at: number, bytes: Uint8Array): void;
  /**
   * Writes `length` bytes (whole floats) at byte `at` of the flat layout from a source that
   * copies into the target's memory itself: `read(dst, from)` must fill dst with the source's
   * bytes from byte `from` on (a shared region's read, with no buffer in between).
   */
  writeFrom(at: number, length: number, read: (dst: Uint8Array, from: number) => void): void;
  /** Makes the model compute with everything written so far. */
  load(): void;
}

function checkRange(size: number, at: number, length: number): void {
  if (at % 4 !== 0 || length % 4 !== 0 || at < 0 || at + length > size * 4) {
    throw new LayoutMismatchError(`weights bytes ${at}..${at + length} do not fit the model's ${size} floats`);
  }
}

/** `bytes` as a writeFrom source. */
const copyFrom = (bytes: Uint8Array) => (dst: Uint8Array, from: number) => dst.set(bytes.subarray(from, from + dst.byteLength));

/** Any backend: a flat buffer (`values`), handed to `onLoad` (assignWeights) at load(). */
export class FlatWeightsTarget implements WeightsTarget {
  stale = false;
  readonly values: Float32Array;
  private readonly bytes: Uint8Array;

  constructor(readonly size: number, private readonly onLoad: (values: Float32Array) => void) {
    this.values = new Float32Array(size);
    this.bytes = new Uint8Array(this.values.buffer);
  }

  write(at: number, bytes: Uint8Array): void {
    this.writeFrom(at, bytes.byteLength, copyFrom(bytes));
  }

  writeFrom(at: number, length: number, read: (dst: Uint8Array, from: number) => void): void {
    checkRange(this.size, at, length);
    this.stale = true;
    read(this.bytes.subarray(at, at + length), 0);
  }

  load(): void {
    this.onLoad(this.values);
    this.stale = false;
  }
}

/** wasm: straight into the variables' memory in the heap. */
class HeapWeightsTarget implements WeightsTarget {
  stale = false;
  /** Byte offsets in the flat layout where each variable starts, and one past the last. */
  private readonly starts: number[];

  constructor(private readonly variables: tf.Variable[], private readonly layout: VariableLayout, private readonly heap: HeapWriter) {
    this.starts = [...layout.specs.map((s) => s.offset * 4), layout.totalSize * 4];
    variables.forEach((v, i) => {
      if (v.dtype !== 'float32' || v.size !== layout.specs[i]!.size) throw new LayoutMismatchError(`variable ${v.name} does not match the layout`);
    });
  }

  get size(): number {
    return this.layout.totalSize;
  }

  write(at: number, bytes: Uint8Array): void {
    this.writeFrom(at, bytes.byteLength, copyFrom(bytes));
  }

  writeFrom(at: number, length: number, read: (dst: Uint8Array, from: number) => void): void {
    checkRange(this.size, at, length);
    this.stale = true;
    // The variable holding byte `at`, then each one the bytes run into.
    let i = this.starts.findIndex((s, k) => s <= at && at < this.starts[k + 1]!);
    for (let done = 0; done < length; i++) {
      const v = this.variables[i]!;
      const view = this.heap.view(v);
      if (!view) throw new LayoutMismatchError(`variable ${v.name} is not in the wasm heap`);
      const from = at + done - this.starts[i]!;
      const n = Math.min(length - done, view.byteLength - from);
      read(new Uint8Array(view.buffer, view.byteOffset + from, n), done);
      done += n;
    }
  }

  load(): void {
    for (const v of this.variables) {
      if (!this.heap.sole(v)) throw new LayoutMismatchError(`variable ${v.name} shares its memory: it cannot be written in place`);
      this.heap.changed(v);
    }
    this.stale = false;
  }
}

/**
 * The target for `model`'s variables on the active backend. On wasm the variables are given
 * memory of their own first (a variable may share its initial tensor's data), so writing into
 * them changes nothing else.
 */
export function weightsTargetFor(model: tf.LayersModel, layout: VariableLayout, variables: tf.Variable[]): WeightsTarget {
  const heap = heapWriter();
  const flat = () => new FlatWeightsTarget(layout.totalSize, (values) => assignWeights(model, layout, values));
  if (!heap) return flat();
  if (!variables.every((v) => heap.sole(v))) {
    // Copy each variable's values into a tensor of its own (clone would share them).
    for (const v of variables) {
      const own = tf.tensor(v.dataSync(), v.shape, 'float32');
      v.assign(own);
      own.dispose();
    }
  }
  if (!variables.every((v) => heap.sole(v))) return flat();
  return new HeapWeightsTarget(variables, layout, heap);
}
