#!/usr/bin/env node
// Validates Kubernetes objects (multi-document YAML, e.g. `helm template`
// output) against the Kubernetes schemas of the kubernetes-models package.
//
// usage: node validate.js [--dump OUT.json] [FILE...]   (no FILE: read stdin)
//
// Prints one JSON line per object: {"kind","apiVersion","name","ok","error"};
// --dump also writes every parsed object, as one JSON array, to OUT.json (so
// that a test can check fields without a YAML parser of its own). Exits 1 if any object is invalid, has no known model, or no object was
// found at all; 2 on a usage or YAML error. The tools come from .tools/
// (scripts/tools.sh); IPAM_TOOLS_DIR overrides where.
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const toolsDir = process.env.IPAM_TOOLS_DIR ||
  path.resolve(__dirname, '..', '..', '.tools');
const toolsRequire = createRequire(path.join(toolsDir, 'node_modules', 'x.js'));
const yaml = toolsRequire('js-yaml');

// Module path of the model for an apiVersion and kind: the core group "v1"
// lives at kubernetes-models/v1/<Kind>, others at <group>/<version>/<Kind>.
function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' ||
      !/^[A-Za-z0-9.\-/]+$/.test(apiVersion) || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  try {
    const mod = toolsRequire(`kubernetes-models/${apiVersion}/${kind}`);
    return mod[kind] || null;
  } catch (e) {
    return null;
  }
}

// One validation result for one parsed object.
function check(obj) {
  const res = {
    kind: obj && obj.kind,
    apiVersion: obj && obj.apiVersion,
    name: obj && obj.metadata && obj.metadata.name,
    ok: false,
    error: null,
  };
  const Model = modelFor(res.apiVersion, res.kind);
  if (!Model) {
    res.error = `no model for ${res.apiVersion} ${res.kind}`;
    return res;
  }
  try {
    new Model(obj).validate();
    res.ok = true;
  } catch (e) {
    res.error = e.message;
  }
  return res;
}

function main() {
  const files = process.argv.slice(2);
  let dump = null;
  if (files[0] === '--dump') {
    if (files.length < 2) {
      process.stderr.write('validate: --dump needs a file\n');
      return 2;
    }
    dump = files[1];
    files.splice(0, 2);
  }
  let text = '';
  try {
    text = files.length
      ? files.map((f) => fs.readFileSync(f, 'utf8')).join('\n---\n')
      : fs.readFileSync(0, 'utf8');
  } catch (e) {
    process.stderr.write(`validate: ${e.message}\n`);
    return 2;
  }
  let docs;
  try {
    docs = yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
  } catch (e) {
    process.stderr.write(`validate: YAML: ${e.message}\n`);
    return 2;
  }
  if (docs.length === 0) {
    process.stderr.write('validate: no object found\n');
    return 1;
  }
  if (dump !== null) {
    fs.writeFileSync(dump, JSON.stringify(docs, null, 1) + '\n');
  }
  let bad = 0;
  for (const d of docs) {
    const r = check(d);
    if (!r.ok) bad++;
    process.stdout.write(JSON.stringify(r) + '\n');
  }
  return bad ? 1 : 0;
}

process.exitCode = main();
