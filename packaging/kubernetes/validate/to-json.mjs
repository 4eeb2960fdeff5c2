// Print the objects of Kubernetes manifests as one JSON array (for tests that derive a
// container's configuration from the DaemonSet). Usage: node to-json.mjs FILE.yaml...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const objects = [];
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (obj !== null) objects.push(obj);
  }
}
console.log(JSON.stringify(objects));
