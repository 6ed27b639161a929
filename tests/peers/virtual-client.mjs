#!/usr/bin/env node
// An MCP agent built only from the official TypeScript SDK, for the gateway's virtual server
// test (crates/authz-gateway/tests/it/virtual_servers.rs): one session against a virtual route
// over the demo upstream (`tickets`) and a stdio upstream (`files`).
//
// Usage: MCP_TOKEN=<bearer token> node virtual-client.mjs <endpoint URL>
//
// Prints one JSON line: the server's name, every tool (all pages), prompt and resource listed,
// the answers of two routed calls (one per member), a resource read and a prompt through their
// prefixes, and how a call the policy refuses ended. The Rust test asserts on it.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url] = process.argv.slice(2);
const token = process.env.MCP_TOKEN;
if (!url || !token) {
    console.error('usage: MCP_TOKEN=<token> node virtual-client.mjs <endpoint URL>');
    process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } }
});
const client = new Client({ name: 'virtual-peer', version: '1.0.0' });
await client.connect(transport);
const text = (r) => r.content?.[0]?.text ?? null;
const out = { server: client.getServerVersion()?.name ?? null, tools: [] };
let cursor;
do {
    const page = await client.listTools(cursor ? { cursor } : {});
    out.tools.push(...page.tools.map((t) => t.name));
    cursor = page.nextCursor;
} while (cursor);
out.prompts = (await client.listPrompts()).prompts.map((p) => p.name);
out.resources = (await client.listResources()).resources.map((r) => r.uri);
out.echo = text(await client.callTool({ name: 'files_echo', arguments: { text: 'via ts' } }));
out.ticket = text(await client.callTool({ name: 'tickets_get_ticket', arguments: { id: 1 } }));
const read = await client.readResource({ uri: 'tickets+tickets://open' });
out.read = read.contents?.[0]?.uri ?? null;
const prompt = await client.getPrompt({ name: 'tickets_triage_ticket', arguments: { id: '1' } });
out.prompt = prompt.messages?.length ?? 0;
try {
    const r = await client.callTool({ name: 'files_wipe', arguments: {} });
    out.wipe = r.isError ? 'tool error' : 'allowed';
} catch (e) {
    out.wipe = `refused ${e?.code ?? ''}`.trim();
}
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));
