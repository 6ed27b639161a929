// Lets the MCP conformance CLI (`@modelcontextprotocol/conformance`) run on Node 20.
//
// The CLI imports `globSync` from `fs`, which Node added in 22. Loaded with
// `node --import ./node20-fs-glob.mjs …`, this registers a resolve hook that hands the CLI's
// `fs` import a module re-exporting `node:fs` plus a `globSync` (fs-with-glob.mjs). Every other
// import, and every other package's `fs`, resolves as usual. On Node 22 and later the hook does
// nothing: the real `fs.globSync` is used.
import { register } from 'node:module';
import * as fs from 'node:fs';

if (typeof fs.globSync !== 'function') {
    register('./fs-glob-hook.mjs', import.meta.url);
}
