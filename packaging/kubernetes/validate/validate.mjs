// Validate Kubernetes manifests against the Kubernetes API schema, two ways:
//
// 1. kubernetes-models' validators (the API's OpenAPI schema compiled): required fields,
//    types, enums and formats;
// 2. TypeScript's excess property check against kubernetes-models' type declarations: a
//    field the API does not have (a typo such as `readOnlyRootFileSystem`, which the API
//    server would drop without a word) is an error.
//
// Usage: node validate.mjs FILE.yaml...   Exit 0: every object valid; 1: errors, printed
// one per line as FILE: KIND/NAME: what.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));

// The kinds isol ships, and the module that models each.
const MODELS = {
  "v1/Namespace": "kubernetes-models/v1/Namespace",
  "v1/ServiceAccount": "kubernetes-models/v1/ServiceAccount",
  "v1/Service": "kubernetes-models/v1/Service",
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "apps/v1/DaemonSet": "kubernetes-models/apps/v1/DaemonSet",
};
// Not API objects: kustomize's own file.
const SKIP = new Set(["kustomize.config.k8s.io/v1beta1/Kustomization"]);

const errors = [];
const typed = [];
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      errors.push(`${file}: YAML: ${doc.errors[0].message}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
    if (SKIP.has(key)) continue;
    const module = MODELS[key];
    if (!module) {
      errors.push(`${file}: ${name}: no schema for ${key} (add it to validate.mjs)`);
      continue;
    }
    const exported = await import(module);
    const Model = exported[obj.kind];
    try {
      new Model(obj).validate();
    } catch (e) {
      errors.push(`${file}: ${name}: ${e.message}`);
    }
    typed.push({ file, name, module, kind: obj.kind, obj });
  }
}

// The type check: one constant per object, typed as its kind's interface.
if (typed.length) {
  // Inside this directory, so that the imports resolve to its node_modules.
  const dir = mkdtempSync(join(here, ".check-"));
  try {
    let src = "";
    typed.forEach((t, i) => {
      src += `import type { I${t.kind} as T${i} } from "${t.module}";\n`;
    });
    typed.forEach((t, i) => {
      src += `// ${t.file}: ${t.name}\nexport const o${i}: T${i} = ${JSON.stringify(t.obj, null, 2)};\n`;
    });
    const ts = join(dir, "manifests.ts");
    writeFileSync(ts, src);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: "node16",
          moduleResolution: "node16",
          types: [],
        },
        files: [ts],
      }),
    );
    try {
      execFileSync(join(here, "node_modules", ".bin", "tsc"), ["-p", join(dir, "tsconfig.json")], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      const lines = src.split("\n");
      for (const m of out.matchAll(/manifests\.ts\((\d+),\d+\): error (TS\d+): (.*)/g)) {
        // The object the line belongs to: the nearest `// FILE: NAME` above it.
        let at = Number(m[1]) - 1;
        while (at > 0 && !lines[at].startsWith("// ")) at--;
        errors.push(`${lines[at].slice(3)}: ${m[3]} (${m[2]})`);
      }
      if (!errors.length) errors.push(`tsc failed: ${out.trim() || e.message}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const e of errors) console.log(e);
if (errors.length) process.exit(1);
console.log(`${typed.length} objects valid`);
