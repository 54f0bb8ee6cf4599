/** The WebGPU tests' one precondition: a Vulkan driver Dawn can use (CI installs Mesa's lavapipe). */
import { probeWebgpuAdapter, type AdapterSummary } from '../../src/model/webgpu.js';

export const NEEDS_VULKAN =
  'the WebGPU tests need a Vulkan driver; without a GPU install Mesa 25 lavapipe (Debian 12: add bookworm-backports to the Suites line of /etc/apt/sources.list.d/debian.sources, then `apt-get install -t bookworm-backports mesa-vulkan-drivers`; .ci/run does this)';

/** Throws NEEDS_VULKAN and the reason when Dawn finds no adapter: these tests fail, never skip. */
export async function requireWebgpuAdapter(): Promise<AdapterSummary> {
  try {
    return (await probeWebgpuAdapter()).summary;
  } catch (err) {
    throw new Error(`${NEEDS_VULKAN}: ${(err as Error).message}`);
  }
}
