#!/usr/bin/env node
// A stdio MCP server built only from the official TypeScript SDK, for the gateway's stdio
// upstream tests (crates/authz-gateway/tests/it/stdio.rs). Tools:
//   whoami  {}              the process id and the environment variables it was given
//   echo    {text}          the text back
//   crash   {}              exits the process while the call is in flight
//   wipe    {}              a tool the test policy denies
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'stdio-peer', version: '1.0.0' });
const text = (t) => ({ content: [{ type: 'text', text: t }] });

server.tool('whoami', 'The process id and its environment', async () =>
    text(JSON.stringify({ pid: process.pid, env: process.env }))
);
server.tool('echo', 'Echo the text', { text: z.string() }, async ({ text: t }) => text(t));
server.tool('crash', 'Exit mid-call', async () => {
    setTimeout(() => process.exit(3), 50);
    return new Promise(() => {});
});
server.tool('wipe', 'Something the policy forbids', async () => text('wiped'));

await server.connect(new StdioServerTransport());
console.error('stdio-peer ready');
