/**
 * The Kubernetes manifests (k8s/): every overlay renders offline with `kubectl kustomize`,
 * every object passes the Kubernetes API schemas (npm package kubernetes-models) with no
 * unknown field, and the objects fit together and fit the programs: ports, names, env,
 * probes, security, resources, the drain and the grace period. Skipped (and says so) where
 * kubectl is not on PATH.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { MEMORY_NEEDED_BYTES } from '../../src/common/startup-checks.js';
import { container, containerEnv, find, OVERLAYS, podSpec, render, SKIPPED, tokenSecret, values, type Any, type K8sObject } from '../helpers/k8s.js';
import { schemaErrors, unknownFields } from '../helpers/k8s-schema.js';

/** Seconds the coordinator needs after the drain timeout: last checkpoint, telling the workers, closing the server. */
const DRAIN_MARGIN_S = 20;
const UNITS: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

function bytes(quantity: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(quantity));
  if (!m) throw new Error(`not a memory quantity: ${quantity}`);
  return Number(m[1]) * UNITS[m[2] ?? '']!;
}

function cores(quantity: string | number): number {
  const s = String(quantity);
  return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

if (SKIPPED) console.warn(`tests/e2e/k8s-manifests.test.ts: ${SKIPPED}`);

describe.skipIf(SKIPPED !== undefined)(`Kubernetes manifests${SKIPPED ? ` (${SKIPPED})` : ''}`, () => {
  const rendered = new Map<string, K8sObject[]>();
  beforeAll(() => {
    for (const overlay of OVERLAYS) rendered.set(overlay, [...render(overlay), tokenSecret('an-example-token')]);
  });

  it('every object of every overlay (and the documented Secret) passes the Kubernetes API schema and has no unknown field', async () => {
    for (const [overlay, objects] of rendered) {
      expect(objects.map((o) => o.kind).sort(), overlay).toEqual(['ConfigMap', 'Deployment', 'Job', 'PersistentVolumeClaim', 'Secret', 'Service']);
      for (const o of objects) {
        const where = `${overlay}: ${o.kind} ${o.metadata.name}`;
        expect(await schemaErrors(o), where).toEqual([]);
        expect(unknownFields(o), where).toEqual([]);
      }
    }
  });

  it('the schema check rejects a wrong type, a missing required field and unknown fields', async () => {
    const job = structuredClone(find(rendered.get('cpu')!, 'Job')) as Any;
    job.spec.parallelism = 'two';
    delete job.spec.template.spec.containers[0].name;
    job.spec.template.spec.terminationGracePeriodSecond = 30;
    job.spec.template.spec.containers[0].env[0].valueFrm = {};
    const errors = await schemaErrors(job);
    expect(errors).toContain('/spec/parallelism must be integer');
    expect(errors.some((e) => /containers\/0 must have required property '?name'?$/.test(e))).toBe(true);
    expect(unknownFields(job).sort()).toEqual(['Job.spec.template.spec.containers[0].env[0].valueFrm', 'Job.spec.template.spec.terminationGracePeriodSecond']);
    // Maps accept any key: labels, annotations, resource lists, ConfigMap data.
    const config = structuredClone(find(rendered.get('cpu')!, 'ConfigMap')) as Any;
    config.data.ANYTHING = 'goes';
    config.metadata.labels['example.com/any'] = 'x';
    expect(unknownFields(config)).toEqual([]);
  });

  for (const overlay of OVERLAYS) {
    describe(overlay, () => {
      const objects = () => rendered.get(overlay)!;
      const deployment = () => find(objects(), 'Deployment', 'tensorfleet-coordinator') as Any;
      const job = () => find(objects(), 'Job', 'tensorfleet-workers') as Any;
      const config = () => values(find(objects(), 'ConfigMap', 'tensorfleet-config'));
      const coordinatorEnv = () => containerEnv(container(deployment(), 'coordinator'), objects(), { name: 'coordinator-pod' });
      const workerEnv = (index: number) =>
        containerEnv(container(job(), 'worker'), objects(), { name: `workers-${index}`, annotations: { 'batch.kubernetes.io/job-completion-index': String(index) } });

      it('coordinator: a Deployment of 1 replica, Recreate, --launch none --resume with checkpoints on the claim', () => {
        const d = deployment();
        expect(d.spec.replicas).toBe(1);
        expect(d.spec.strategy.type).toBe('Recreate');
        const c = container(d, 'coordinator');
        expect(c.command).toEqual(['node', '/app/dist/coordinator/cli.js']);
        const args: string[] = c.args;
        expect(args.slice(0, 3)).toEqual(['--launch', 'none', '--resume']);
        const dir = args[args.indexOf('--checkpoint-dir') + 1]!;
        const claim = find(objects(), 'PersistentVolumeClaim') as Any;
        const volume = podSpec(d).volumes.find((v: Any) => v.persistentVolumeClaim?.claimName === claim.metadata.name);
        const mount = c.volumeMounts.find((m: Any) => m.name === volume.name);
        expect(dir.startsWith(`${mount.mountPath}/`), `${dir} is on the claim mounted at ${mount.mountPath}`).toBe(true);
        expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
        // Listens on all interfaces (the kubelet's probes and the Service reach the pod IP), with the token from the Secret.
        const env = coordinatorEnv();
        expect(env.TENSORFLEET_HOST).toBe('0.0.0.0');
        expect(env.TENSORFLEET_TOKEN).toBe('an-example-token');
        expect(c.env.find((e: Any) => e.name === 'TENSORFLEET_TOKEN').valueFrom.secretKeyRef).toEqual({ name: 'tensorfleet-token', key: 'token' });
      });

      it('Service: the grpc port leads to the port the coordinator listens on; an http port is declared', () => {
        const service = find(objects(), 'Service', 'tensorfleet-coordinator') as Any;
        const c = container(deployment(), 'coordinator');
        for (const [k, v] of Object.entries(service.spec.selector)) expect(deployment().spec.template.metadata.labels[k]).toBe(v);
        const grpcPort = service.spec.ports.find((p: Any) => p.name === 'grpc');
        const target = c.ports.find((p: Any) => p.name === grpcPort.targetPort);
        expect(target.containerPort).toBe(Number(coordinatorEnv().TENSORFLEET_PORT));
        expect(service.spec.ports.find((p: Any) => p.name === 'http')).toMatchObject({ port: 9464, targetPort: 'http' });
        expect(c.ports.find((p: Any) => p.name === 'http').containerPort).toBe(9464);
        // Workers find the coordinator through the Service's DNS name and port.
        expect(workerEnv(0).TENSORFLEET_COORDINATOR).toBe(`${service.metadata.name}:${grpcPort.port}`);
      });

      it('workers: an Indexed Job, parallelism = completions = TENSORFLEET_WORKERS, ids from JOB_COMPLETION_INDEX, same token', () => {
        const j = job();
        expect(j.spec.completionMode).toBe('Indexed');
        expect(j.spec.parallelism).toBe(Number(config().TENSORFLEET_WORKERS));
        expect(j.spec.completions).toBe(j.spec.parallelism);
        expect(Number(config().TENSORFLEET_MAX_WORKERS)).toBeGreaterThanOrEqual(j.spec.parallelism);
        expect(container(j, 'worker').command).toEqual(['node', '/app/dist/worker/cli.js']);
        expect([0, 1, 5].map((i) => workerEnv(i).TENSORFLEET_WORKER_ID)).toEqual(['worker-0', 'worker-1', 'worker-5']);
        expect(workerEnv(0).TENSORFLEET_TOKEN).toBe('an-example-token');
      });

      it('workers: failed pods are replaced (restartPolicy Never with a backoff limit); evictions do not count; usage errors fail the job', () => {
        const j = job();
        expect(podSpec(j).restartPolicy).toBe('Never');
        expect(j.spec.backoffLimit).toBeGreaterThan(0);
        const rules: Any[] = j.spec.podFailurePolicy.rules;
        expect(rules).toContainEqual({ action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] });
        expect(rules).toContainEqual({ action: 'FailJob', onExitCodes: { containerName: 'worker', operator: 'In', values: [2] } });
      });

      it('probes: native grpc probes on the coordinator gRPC port; liveness asks the "liveness" service; workers have none', () => {
        const c = container(deployment(), 'coordinator');
        const port = Number(coordinatorEnv().TENSORFLEET_PORT);
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          expect(c[probe].grpc.port, probe).toBe(port);
          expect(Object.keys(c[probe]).filter((k) => ['exec', 'httpGet', 'tcpSocket'].includes(k)), probe).toEqual([]);
        }
        expect(c.readinessProbe.grpc.service ?? '').toBe('');
        expect(c.livenessProbe.grpc.service).toBe('liveness');
        // A blocked event loop (evaluation) must not get the coordinator restarted within a minute.
        expect(c.livenessProbe.periodSeconds * c.livenessProbe.failureThreshold).toBeGreaterThanOrEqual(60);
        const w = container(job(), 'worker');
        expect([w.livenessProbe, w.readinessProbe, w.startupProbe]).toEqual([undefined, undefined, undefined]);
      });

      it('security: non-root, read-only root filesystem, no privilege escalation, no capabilities, no service links', () => {
        for (const o of [deployment(), job()]) {
          const spec = podSpec(o);
          expect(spec.securityContext.runAsNonRoot, o.kind).toBe(true);
          expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
          expect(spec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
          expect(spec.enableServiceLinks, 'service links would add TENSORFLEET_COORDINATOR_* variables').toBe(false);
          for (const c of spec.containers) {
            expect(c.securityContext, `${o.kind}/${c.name}`).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
            expect(c.volumeMounts.some((m: Any) => m.mountPath === '/tmp'), 'a writable /tmp').toBe(true);
            expect(c.image).toMatch(/^[^:]+:[\w.-]+$/);
            expect(c.image.endsWith(':latest')).toBe(false);
          }
        }
      });

      it('resources: cpu and memory requests and limits everywhere; memory limits cover what the start-up check asks for', () => {
        for (const [o, role] of [[deployment(), 'coordinator'], [job(), 'worker']] as const) {
          const r = podSpec(o).containers[0].resources;
          for (const kind of ['requests', 'limits']) {
            expect(r[kind]?.cpu, `${role} ${kind}.cpu`).toBeDefined();
            expect(r[kind]?.memory, `${role} ${kind}.memory`).toBeDefined();
          }
          expect(bytes(r.limits.memory)).toBeGreaterThanOrEqual(MEMORY_NEEDED_BYTES[role]);
          expect(bytes(r.requests.memory)).toBeLessThanOrEqual(bytes(r.limits.memory));
          expect(cores(r.requests.cpu)).toBeLessThanOrEqual(cores(r.limits.cpu));
        }
      });

      it('grace periods: the coordinator outlives its drain (drain timeout + margin); workers leave at once', () => {
        const drainS = Number(config().TENSORFLEET_DRAIN_TIMEOUT ?? 10);
        expect(podSpec(deployment()).terminationGracePeriodSeconds).toBeGreaterThanOrEqual(drainS + DRAIN_MARGIN_S);
        expect(podSpec(job()).terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
        // Workers keep reconnecting for longer than a coordinator restart takes.
        expect(Number(workerEnv(0).TENSORFLEET_CONNECT_TIMEOUT)).toBeGreaterThanOrEqual(300);
      });
    });
  }

  it('gpu: one GPU per worker, a GPU node selector and toleration, --backend tensorflow on the gpu image; the coordinator stays on CPU', () => {
    const objects = rendered.get('gpu')!;
    const j = find(objects, 'Job') as Any;
    const w = container(j, 'worker');
    expect(String(w.resources.limits['nvidia.com/gpu'])).toBe('1');
    expect(w.args).toEqual(['--backend', 'tensorflow']);
    expect(podSpec(j).nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(podSpec(j).tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(w.image).toMatch(/-gpu$/);
    const coordinator = container(find(objects, 'Deployment'), 'coordinator');
    expect(coordinator.image).toMatch(/-cpu$/);
    expect(coordinator.resources.limits['nvidia.com/gpu']).toBeUndefined();
  });

  it('cpu: nothing asks for a GPU or a GPU node', () => {
    const objects = rendered.get('cpu')!;
    for (const o of [find(objects, 'Job'), find(objects, 'Deployment')]) {
      const spec = podSpec(o);
      expect(spec.nodeSelector, o.kind).toBeUndefined();
      expect(spec.tolerations).toBeUndefined();
      expect(spec.containers[0].resources.limits['nvidia.com/gpu']).toBeUndefined();
      expect(spec.containers[0].image).toMatch(/-cpu$/);
    }
  });
});
