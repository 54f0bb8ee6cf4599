/**
 * Why: the stock tfjs wasm backend cannot train a Conv2D model (it has no
 * `Conv2DBackpropFilter` kernel) and its matmuls are several times slower with
 * transposeA/transposeB set, which is exactly how dense-layer gradients call them.
 *
 * Setup: tfjs-core runs every registered kernel's `setupFunc` on each
 * `tf.setBackend(name)` (engine.setupRegisteredKernels). The replacement matmul
 * configs carry the stock `setupFunc` (it cwraps the C++ entry point), so
 * registering before `setBackend('wasm')` works; registering after also works
 * because the stock setup already ran for the live backend and none of our
 * kernels needs a setup of its own.
 */
import * as tf from '@tensorflow/tfjs';
// Side effect: registers the wasm backend and its stock kernels, which must
// exist before we can capture/replace them.
import '@tensorflow/tfjs-backend-wasm';
import { createNoTransposeMatMulConfig } from './batch-mat-mul.js';
import { conv2dBackpropFilterConfig } from './conv2d-backprop-filter.js';

const BACKEND = 'wasm';
/** Stock kernels replaced by a wrapper that never passes transpose flags. */
const REPLACED_MATMULS = ['BatchMatMul', '_FusedMatMul'] as const;
/** Marks configs registered by this module (survives duplicate module loads). */
const MARK: unique symbol = Symbol.for('tensorfleet.wasm-kernel');

type MarkedConfig = tf.KernelConfig & { [MARK]?: true };

function isOurs(config: tf.KernelConfig | undefined): boolean {
  return config != null && (config as MarkedConfig)[MARK] === true;
}

function mark(config: tf.KernelConfig): tf.KernelConfig {
  const marked: MarkedConfig = { ...config };
  marked[MARK] = true;
  return marked;
}

/** Kernel names this module registers (or replaces) for the wasm backend. */
export function kernelNamesProvided(): string[] {
  return [conv2dBackpropFilterConfig.kernelName, ...REPLACED_MATMULS];
}

/**
 * Registers the extra/replacement wasm kernels. Idempotent, and valid both
 * before and after `await tf.setBackend('wasm')`.
 */
export function registerWasmKernels(): void {
  const conv = tf.getKernel(conv2dBackpropFilterConfig.kernelName, BACKEND);
  if (!isOurs(conv)) {
    if (conv != null) tf.unregisterKernel(conv2dBackpropFilterConfig.kernelName, BACKEND);
    tf.registerKernel(mark(conv2dBackpropFilterConfig));
  }
  for (const name of REPLACED_MATMULS) {
    const stock = tf.getKernel(name, BACKEND);
    if (stock == null) {
      throw new Error(`registerWasmKernels: stock kernel '${name}' is not registered for '${BACKEND}'`);
    }
    if (isOurs(stock)) continue;
    const replacement = mark(createNoTransposeMatMulConfig(stock));
    tf.unregisterKernel(name, BACKEND);
    tf.registerKernel(replacement);
  }
}
