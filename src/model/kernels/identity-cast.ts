/**
 * Zero-copy wasm `Identity` and same-dtype `Cast`, plus a correct cast to bool.
 *
 * While a gradient tape is recording, tfjs-core clones (Identity) every tensor
 * a gradient function saves, and the relu gradient casts float32 to float32.
 * The stock wasm kernels copy the whole buffer each time (about 30 copies per
 * training step of the reference CNN, several of [B,26,26,32]). Tensors are
 * immutable, so, like the cpu and webgl backends (and wasm's own Reshape), we
 * share the data id and bump the backend's refCount instead.
 *
 * The stock wasm cast to bool just truncates into a Uint8Array (3.7 -> 3,
 * -2.5 -> 254, 0.2 -> 0); the cpu backend computes x != 0, and so do we.
 *
 * Strings and other dtype changes are delegated to the stock kernel functions
 * captured before the stock registrations are replaced.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { withStockFallback } from './stock-fallback.js';

interface UnaryArgs {
  inputs: { x: tf.TensorInfo };
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}


const NUMERIC: ReadonlySet<string> = new Set(['float32', 'int32', 'bool']);

/** A new TensorInfo on x's data (refCount + 1), or null for strings and complex numbers. */
function share(args: UnaryArgs): tf.TensorInfo | null {
  const { x } = args.inputs;
  if (!NUMERIC.has(x.dtype)) return null;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

function castToBool(args: UnaryArgs): tf.TensorInfo | null {
  const { inputs: { x }, backend } = args;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') return null;
  const out = backend.makeOutput([...x.shape], 'bool');
  // Views are taken after the allocation: heap growth detaches older views.
  const src = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const dst = backend.typedArrayFromHeap(out) as Uint8Array;
  for (let i = 0; i < src.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
  return out;
}

function castHandler(args: UnaryArgs): tf.TensorInfo | null {
  const dtype = args.attrs?.['dtype'];
  if (dtype === args.inputs.x.dtype) return share(args);
  return dtype === 'bool' ? castToBool(args) : null;
}

/** Identity shares numeric data. */
export function createIdentityConfig(stock: tf.KernelConfig): tf.KernelConfig {
  return withStockFallback<UnaryArgs>(stock, 'Identity', share);
}

/** Cast shares data when the dtype does not change and computes x != 0 for bool. */
export function createCastConfig(stock: tf.KernelConfig): tf.KernelConfig {
  return withStockFallback<UnaryArgs>(stock, 'Cast', castHandler);
}
