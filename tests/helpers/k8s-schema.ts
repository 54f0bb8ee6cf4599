/**
 * Validates Kubernetes objects offline against the API schemas shipped in the npm package
 * `kubernetes-models` (generated from the Kubernetes OpenAPI definitions and compiled to ajv
 * validators: types, enums, required fields, formats).
 *
 * Those schemas, like the OpenAPI documents they come from, do not forbid unknown fields; the
 * API server does (kubectl's default `--validate=strict` rejects them). So unknown fields are
 * checked separately, against the same package's type declarations: every field of an object
 * must be a declared property of its type, except where the type is a map (labels,
 * annotations, resource lists, ConfigMap data), where any key is allowed.
 */
import { createRequire } from 'node:module';
import ts from 'typescript';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [k: string]: unknown };
  [k: string]: unknown;
}

type ModelClass = new (data: unknown) => { validate(): void };
type ModelModule = Record<string, ModelClass>;

/** apiVersion/kind -> module of kubernetes-models (static imports, for the bundler). */
const MODELS: Record<string, { module: string; load: () => Promise<unknown> }> = {
  'v1/ConfigMap': { module: 'v1/ConfigMap', load: () => import('kubernetes-models/v1/ConfigMap') },
  'v1/Secret': { module: 'v1/Secret', load: () => import('kubernetes-models/v1/Secret') },
  'v1/Service': { module: 'v1/Service', load: () => import('kubernetes-models/v1/Service') },
  'v1/PersistentVolumeClaim': { module: 'v1/PersistentVolumeClaim', load: () => import('kubernetes-models/v1/PersistentVolumeClaim') },
  'apps/v1/Deployment': { module: 'apps/v1/Deployment', load: () => import('kubernetes-models/apps/v1/Deployment') },
  'batch/v1/Job': { module: 'batch/v1/Job', load: () => import('kubernetes-models/batch/v1/Job') },
};

const require = createRequire(import.meta.url);

function modelKey(o: K8sObject): string {
  const key = `${o.apiVersion}/${o.kind}`;
  if (!MODELS[key]) throw new Error(`no schema wired for ${key} (${o.metadata?.name}): add it to MODELS in tests/helpers/k8s-schema.ts`);
  return key;
}

/** Schema errors of one object (empty when valid), as "path message" lines. */
export async function schemaErrors(o: K8sObject): Promise<string[]> {
  const key = modelKey(o);
  const Model = ((await MODELS[key]!.load()) as ModelModule)[o.kind]!;
  try {
    new Model(o).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: Array<{ instancePath: string; message?: string }> }).errors;
    if (!errors) throw err;
    return errors.map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`.trim());
  }
}

let program: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;

/** The TypeScript view of the package's declarations, loaded once (a few seconds). */
function declarations(): { checker: ts.TypeChecker; types: Map<string, ts.Type> } {
  if (program) return program;
  const files = new Map(Object.entries(MODELS).map(([key, mod]) => [key, require.resolve(`kubernetes-models/${mod.module}`).replace(/\.js$/, '.d.ts')]));
  const p = ts.createProgram([...files.values()], { noEmit: true, skipLibCheck: true, types: [], moduleResolution: ts.ModuleResolutionKind.Node10 });
  const checker = p.getTypeChecker();
  const types = new Map<string, ts.Type>();
  for (const [key, file] of files) {
    const source = p.getSourceFile(file);
    const kind = key.split('/').pop()!;
    const symbol = source && checker.getSymbolAtLocation(source);
    const iface = symbol && checker.getExportsOfModule(symbol).find((s) => s.name === `I${kind}`);
    if (!iface) throw new Error(`interface I${kind} not found in ${file}`);
    types.set(key, checker.getDeclaredTypeOfSymbol(iface));
  }
  program = { checker, types };
  return program;
}

function walk(checker: ts.TypeChecker, type: ts.Type, value: unknown, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  let t = checker.getNonNullableType(type);
  if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  if (t.isUnion()) {
    const objects = t.types.filter((u) => u.flags & ts.TypeFlags.Object);
    if (objects.length !== 1) return;
    t = objects[0]!;
  }
  if (Array.isArray(value)) {
    const element = checker.getIndexTypeOfType(t, ts.IndexKind.Number);
    if (element) value.forEach((v, i) => walk(checker, element, v, `${path}[${i}]`, out));
    return;
  }
  const map = checker.getIndexTypeOfType(t, ts.IndexKind.String);
  for (const [key, v] of Object.entries(value)) {
    const prop = checker.getPropertyOfType(t, key);
    const at = `${path}.${key}`;
    if (prop) walk(checker, checker.getTypeOfSymbolAtLocation(prop, prop.valueDeclaration ?? prop.declarations![0]!), v, at, out);
    else if (map) walk(checker, map, v, at, out);
    else out.push(at);
  }
}

/** Paths of fields that the object's type does not declare (empty when there are none). */
export function unknownFields(o: K8sObject): string[] {
  const { checker, types } = declarations();
  const out: string[] = [];
  walk(checker, types.get(modelKey(o))!, o, o.kind, out);
  return out;
}
