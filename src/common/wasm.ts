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

let relaxedSimd: boolean | undefined;

/**
 * Whether WebAssembly relaxed SIMD (fused multiply-add, relaxed_madd) compiles here, turning on
 * V8's flag for it first where the engine still keeps it behind one (Node 20; Node 22's V8 has it
 * on). Only modules compiled afterwards see the flag; the probe compiles one instruction once.
 */
export function enableRelaxedSimd(): boolean {
  if (relaxedSimd !== undefined) return relaxedSimd;
  if (!wasmApi) return (relaxedSimd = false);
  setFlagsFromString('--experimental-wasm-relaxed-simd');
  // (func (param v128) (result v128) local.get 0 local.get 0 local.get 0 f32x4.relaxed_madd)
  const probe = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x06, 0x01, 0x60, 0x01, 0x7b, 0x01, 0x7b,
    0x03, 0x02, 0x01, 0x00,
    0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfd, 0x85, 0x02, 0x0b,
  ];
  try {
    new wasmApi.Module(Uint8Array.from(probe));
    relaxedSimd = true;
  } catch {
    relaxedSimd = false;
  }
  return relaxedSimd;
}

/** A new instance's exports, typed as the caller knows them. */
export function instantiate<T>(module: WasmModule, imports?: object): T {
  return new wasmApi!.Instance(module, imports).exports as T;
}
