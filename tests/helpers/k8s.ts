/**
 * The manifests under k8s/ as data: render an overlay with `kubectl kustomize` (offline), look
 * objects up, and work out a container's environment the way the kubelet does (envFrom, then
 * env in order, with ConfigMap, Secret and downward-API values and $(VAR) expansion).
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { K8sObject } from './k8s-schema.js';

export type { K8sObject } from './k8s-schema.js';
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const OVERLAYS = ['cpu', 'gpu'] as const;

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, program), constants.X_OK);
      return join(dir, program);
    } catch {
      // not here
    }
  }
  return undefined;
}

export const KUBECTL = onPath('kubectl');
/** Why the kubectl tests are skipped, or undefined when they run. */
export const SKIPPED = KUBECTL ? undefined : 'skipped: kubectl is not on PATH (it renders the kustomize overlays)';

function parseYaml(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** `kubectl kustomize k8s/overlays/<overlay>`, parsed. */
export function render(overlay: string): K8sObject[] {
  return parseYaml(execFileSync(KUBECTL!, ['kustomize', join(ROOT, 'k8s/overlays', overlay)], { encoding: 'utf8', timeout: 60_000 }));
}

/** The job token Secret, made with the command docs/kubernetes.md gives (client-side dry run). */
export function tokenSecret(token: string): K8sObject {
  const text = execFileSync(KUBECTL!, ['create', 'secret', 'generic', 'tensorfleet-token', `--from-literal=token=${token}`, '--dry-run=client', '-o', 'yaml'], { encoding: 'utf8', timeout: 60_000 });
  return parseYaml(text)[0]!;
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!o) throw new Error(`no ${kind}${name ? ` named ${name}` : ''} in the rendered manifests`);
  return o;
}

export type Any = any;

export function podSpec(o: K8sObject): Any {
  return (o as Any).spec.template.spec;
}

export function container(o: K8sObject, name: string): Any {
  const c = podSpec(o).containers.find((x: Any) => x.name === name);
  if (!c) throw new Error(`${o.kind} ${o.metadata.name} has no container ${name}`);
  return c;
}

/** A ConfigMap's or Secret's values as plain strings (Secret `data` is base64; `stringData` is not). */
export function values(o: K8sObject): Record<string, string> {
  const out: Record<string, string> = {};
  const data = ((o as Any).data ?? {}) as Record<string, string>;
  for (const [k, v] of Object.entries(data)) out[k] = o.kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : String(v);
  for (const [k, v] of Object.entries(((o as Any).stringData ?? {}) as Record<string, string>)) out[k] = String(v);
  return out;
}

/** Kubernetes' $(VAR) expansion: defined variables are replaced, `$$` escapes, unknown ones stay. */
export function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return name !== undefined && name in env ? env[name]! : m;
  });
}

export interface PodFacts {
  name: string;
  namespace?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

function fieldRef(path: string, pod: PodFacts): string {
  if (path === 'metadata.name') return pod.name;
  if (path === 'metadata.namespace') return pod.namespace ?? 'default';
  const m = /^metadata\.(annotations|labels)\['([^']+)'\]$/.exec(path);
  if (m) {
    const v = (m[1] === 'annotations' ? pod.annotations : pod.labels)?.[m[2]!];
    if (v !== undefined) return v;
  }
  throw new Error(`fieldRef ${path} is not known for pod ${pod.name}`);
}

/** The environment a container starts with: envFrom first, then env in order (each may refer to those before it). */
export function containerEnv(c: Any, objects: K8sObject[], pod: PodFacts): Record<string, string> {
  const env: Record<string, string> = {};
  const source = (kind: string, name: string) => values(find(objects, kind, name));
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const data = source(from.configMapRef ? 'ConfigMap' : 'Secret', ref.name);
    for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v;
  }
  for (const e of c.env ?? []) {
    const vf = e.valueFrom;
    if (!vf) env[e.name] = expand(String(e.value ?? ''), env);
    else if (vf.configMapKeyRef) env[e.name] = source('ConfigMap', vf.configMapKeyRef.name)[vf.configMapKeyRef.key]!;
    else if (vf.secretKeyRef) env[e.name] = source('Secret', vf.secretKeyRef.name)[vf.secretKeyRef.key]!;
    else if (vf.fieldRef) env[e.name] = fieldRef(vf.fieldRef.fieldPath, pod);
    else throw new Error(`env ${e.name}: unsupported valueFrom ${Object.keys(vf).join(', ')}`);
    if (env[e.name] === undefined) throw new Error(`env ${e.name}: the referenced key does not exist`);
  }
  return env;
}
