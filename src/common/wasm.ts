/**
 * The bits of the WebAssembly JS API the project uses (its TypeScript libs declare no DOM
 * types), and loading the modules the build makes from `.wat` sources (scripts/gen-wasm.mjs,
 * shipped as base64). Every user keeps a JavaScript path for engines without WebAssembly SIMD.
 */
import { setFlagsFromString } from 'node:v8';

export type WasmModule = object;

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

export interface WasmApi {
  Memory: abstract new (...args: never[]) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports?: object) => { exports: unknown };
}

/** The engine's WebAssembly object, if it has one. */
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** Compiles a module given as base64; null where WebAssembly, or an instruction it uses (SIMD), is missing. */
export function compileBase64(base64: string): WasmModule | null {
  if (!wasmApi) return null;
  try {
    return new wasmApi.Module(Buffer.from(base64, 'base64'));
  } catch {
    return null;
  }
}

let relaxedSimdAllowed = false;

/**
 * Lets modules compiled from now on use WebAssembly relaxed SIMD (relaxed_madd: a fused
 * multiply-add), turning on V8's flag where the engine still keeps it behind one (Node 20;
 * Node 22's V8 has it on). An engine without it still refuses such a module at compile time, so
 * callers keep a module without it.
 */
export function allowRelaxedSimd(): void {
  if (relaxedSimdAllowed) return;
  setFlagsFromString('--experimental-wasm-relaxed-simd');
  relaxedSimdAllowed = true;
}

/** A new instance's exports, typed as the caller knows them. */
export function instantiate<T>(module: WasmModule, imports?: object): T {
  return new wasmApi!.Instance(module, imports).exports as T;
}
