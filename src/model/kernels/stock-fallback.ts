/**
 * A kernel that replaces one of the stock wasm backend's where it has a faster path and hands
 * everything else back to the stock kernel: `fast(args)` returns null to fall back.
 */
import type * as tf from '@tensorflow/tfjs';

export function withStockFallback<Args>(stock: tf.KernelConfig, name: string, fast: (args: Args) => tf.TensorInfo | null): tf.KernelConfig {
  if (stock.backendName !== 'wasm' || stock.kernelName !== name) {
    throw new Error(`create${name}Config: expected the wasm ${name}, got ${stock.kernelName}/${stock.backendName}`);
  }
  const stockFunc = stock.kernelFunc;
  const kernelFunc = (args: Args): tf.TensorInfo => fast(args) ?? (stockFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo);
  return {
    kernelName: name,
    backendName: 'wasm',
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    setupFunc: stock.setupFunc,
    disposeFunc: stock.disposeFunc,
  };
}
