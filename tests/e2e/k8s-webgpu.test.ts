/**
 * k8s/overlays/gpu-webgpu, the gpu overlay's WebGPU variant: it renders, every object passes
 * the Kubernetes API schemas with no unknown field, and it differs from the gpu overlay only
 * in the worker's image, backend and environment (the `graphics` driver capability that makes
 * the NVIDIA container runtime mount the Vulkan ICD). Skipped (and says so) without kubectl,
 * as tests/e2e/k8s-manifests.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_CHOICES } from '../../src/model/backend.js';
import { container, containerEnv, find, podSpec, render, ROOT, SKIPPED, tokenSecret, type Any, type K8sObject } from '../helpers/k8s.js';
import { schemaErrors, unknownFields } from '../helpers/k8s-schema.js';

if (SKIPPED) console.warn(`tests/e2e/k8s-webgpu.test.ts: ${SKIPPED}`);

describe.skipIf(SKIPPED !== undefined)(`Kubernetes overlay gpu-webgpu${SKIPPED ? ` (${SKIPPED})` : ''}`, () => {
  let webgpu: K8sObject[];
  let gpu: K8sObject[];
  beforeAll(() => {
    webgpu = render('gpu-webgpu');
    gpu = render('gpu');
  });
  const worker = (objects: K8sObject[]) => container(find(objects, 'Job', 'tensorfleet-workers'), 'worker');

  it('every object passes the Kubernetes API schema and has no unknown field', async () => {
    expect(webgpu.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Job', 'PersistentVolumeClaim', 'Service']);
    for (const o of webgpu) {
      expect(await schemaErrors(o), `${o.kind} ${o.metadata.name}`).toEqual([]);
      expect(unknownFields(o), `${o.kind} ${o.metadata.name}`).toEqual([]);
    }
  });

  it('workers: the webgpu image, --backend webgpu, the graphics driver capability, one GPU each, on GPU nodes', () => {
    const w = worker(webgpu);
    expect(w.image).toMatch(/-webgpu$/);
    expect(w.args).toEqual(['--backend', 'webgpu']);
    expect(BACKEND_CHOICES).toContain(w.args[1]);
    const env = containerEnv(w, [...webgpu, tokenSecret('an-example-token')], { name: 'workers-0', annotations: { 'batch.kubernetes.io/job-completion-index': '0' } });
    expect(env.NVIDIA_DRIVER_CAPABILITIES!.split(',').sort()).toEqual(['compute', 'graphics', 'utility']);
    expect(env.XDG_CACHE_HOME).toMatch(/^\/tmp\//); // the writable volume: the root filesystem is read-only
    expect(w.volumeMounts).toContainEqual(expect.objectContaining({ mountPath: '/tmp' }));
    expect(env.TF_FORCE_GPU_ALLOW_GROWTH).toBeUndefined();
    expect(env.CUDA_CACHE_PATH).toBeUndefined();
    expect(String(w.resources.limits['nvidia.com/gpu'])).toBe('1');
    expect(env.TENSORFLEET_WORKER_ID).toBe('worker-0');
  });

  it('is the gpu overlay but for the worker container: scheduling, resources, security, the coordinator on the cpu image', () => {
    const strip = (objects: K8sObject[]) =>
      objects.map((o) => {
        const copy = structuredClone(o) as Any;
        if (o.kind === 'Job') {
          const c = copy.spec.template.spec.containers.find((x: Any) => x.name === 'worker');
          delete c.image;
          delete c.args;
          c.env = c.env.filter((e: Any) => !['NVIDIA_DRIVER_CAPABILITIES', 'XDG_CACHE_HOME', 'TF_FORCE_GPU_ALLOW_GROWTH', 'CUDA_CACHE_PATH'].includes(e.name));
        }
        return copy;
      });
    expect(strip(webgpu)).toEqual(strip(gpu));
    expect(podSpec(find(webgpu, 'Job')).nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(container(find(webgpu, 'Deployment', 'tensorfleet-coordinator'), 'coordinator').image).toMatch(/-cpu$/);
  });

  it('docker/webgpu.Dockerfile: Debian 12 (dawn.node needs glibc 2.34), the Vulkan loader, no Mesa, one platform of dawn.node', () => {
    const text = readFileSync(join(ROOT, 'docker/webgpu.Dockerfile'), 'utf8');
    const froms = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(froms).toEqual(['node:20-bookworm-slim', 'node:20-bookworm-slim']);
    expect(text).toMatch(/apt-get install -y --no-install-recommends libvulkan1\b/);
    expect(text).not.toMatch(/mesa-vulkan-drivers/);
    expect(text).toMatch(/NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics/);
    expect(text).toMatch(/USER 1000:1000/);
  });
});
