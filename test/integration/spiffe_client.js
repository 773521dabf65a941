// A go-spiffe-like gRPC client for the integration tests, in node's
// grpc-js: it presents an SVID, verifies the server's chain against the
// bundle and accepts the server by its SPIFFE ID (one spiffe:// URI SAN,
// optionally an exact one), never by host name - what Python's grpcio
// cannot do.
//
// Reads one JSON request per line on stdin, writes one JSON answer per
// line on stdout:
//   {"target": "127.0.0.1:7777", "bundle": path, "key": path, "cert": path,
//    "expect": "spiffe://..." or null, "method": "allocate" | "release" |
//    "health", "child": {"name", "conduit", "node", "family": 4|6,
//    "trench"}, "service": "", "timeout_ms": 5000, "keep": name or null}
//   -> {"ok": true, "address", "prefixLength", "status", "server_id"}
//   or {"ok": false, "code": N, "details": "...", "server_id"}
// Each request opens a new connection unless "keep" names a client kept
// from an earlier request. Needs @grpc/grpc-js and @grpc/proto-loader on
// NODE_PATH and the proto folder in IPAM_PROTO_DIR.
'use strict';

const fs = require('fs');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const protoDir = process.env.IPAM_PROTO_DIR;
const defs = loader.loadSync(
    ['ipam/v1/ipam.proto', 'grpc/health/v1/health.proto'],
    { includeDirs: [protoDir], keepCase: true, enums: String,
      defaults: true });
const pkg = grpc.loadPackageDefinition(defs);
const kept = new Map();

// The URI SANs of a certificate as node's TLS shows it.
function uriSans(cert) {
    return (cert.subjectaltname || '').split(', ')
        .filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

// New clients of both services, with the SVID of r, accepting a server
// by SPIFFE ID; seen.id gets the server's ID.
function makeClients(r, seen) {
    const bundle = fs.readFileSync(r.bundle);
    const key = r.key ? fs.readFileSync(r.key) : null;
    const cert = r.cert ? fs.readFileSync(r.cert) : null;
    const creds = grpc.credentials.createSsl(bundle, key, cert, {
        checkServerIdentity: (host, c) => {
            const uris = uriSans(c);
            seen.id = uris.length === 1 ? uris[0] : null;
            if (uris.length !== 1 || !uris[0].startsWith('spiffe://'))
                return new Error('server has ' + uris.length +
                    ' URI SANs, an SVID has one spiffe:// URI');
            if (r.expect && uris[0] !== r.expect)
                return new Error('server ID ' + uris[0] + ' is not ' +
                    r.expect);
            return undefined;
        },
    });
    const opts = { 'grpc.use_local_subchannel_pool': 1,
        'grpc.enable_retries': 0 };
    return {
        ipam: new pkg.ipam.v1.Ipam(r.target, creds, opts),
        health: new pkg.grpc.health.v1.Health(r.target, creds, opts),
        seen: seen,
    };
}

function childOf(c) {
    return {
        name: c.name,
        subnet: {
            conduit: { name: c.conduit, trench: { name: c.trench || 'default' } },
            node: c.node,
            ipFamily: c.family === 6 ? 'IPV6' : 'IPV4',
        },
    };
}

function handle(r, done) {
    let cl;
    if (r.keep && kept.has(r.keep)) {
        cl = kept.get(r.keep);
    } else {
        cl = makeClients(r, {});
        if (r.keep)
            kept.set(r.keep, cl);
    }
    const deadline = new Date(Date.now() + (r.timeout_ms || 5000));
    const finish = (err, res) => {
        const out = { server_id: cl.seen.id || null };
        if (err) {
            out.ok = false;
            out.code = err.code;
            out.details = err.details;
        } else {
            out.ok = true;
            Object.assign(out, res);
        }
        if (!r.keep) {
            cl.ipam.close();
            cl.health.close();
        }
        done(out);
    };
    if (r.method === 'allocate')
        cl.ipam.Allocate(childOf(r.child), { deadline }, finish);
    else if (r.method === 'release')
        cl.ipam.Release(childOf(r.child), { deadline },
            (e) => finish(e, {}));
    else
        cl.health.Check({ service: r.service || '' }, { deadline },
            (e, res) => finish(e, res ? { status: res.status } : {}));
}

// Answers in order of the requests.
let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (!line.trim())
        return;
    const r = JSON.parse(line);
    chain = chain.then(() => new Promise((resolve) => {
        handle(r, (out) => {
            process.stdout.write(JSON.stringify(out) + '\n');
            resolve();
        });
    }));
}).on('close', () => {
    chain.then(() => process.exit(0));
});
