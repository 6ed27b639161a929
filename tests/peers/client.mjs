#!/usr/bin/env node
// An MCP agent built only from the official TypeScript SDK, used by the gateway's integration
// tests (crates/authz-gateway/tests/it/peers.rs) to drive a scripted session through the gateway.
//
// Usage: MCP_TOKEN=<bearer token> node client.mjs <endpoint URL> <user|norole|long>
//
// The token travels in the environment rather than on the command line so it does not show up
// in process listings. Each step prints exactly one JSON line on stdout:
//   {"step": "...", "ok": true|false, "expected": "ok"|"error", "as_expected": bool, ...details}
// The last line is {"step": "summary", ...}. The exit status is 0 only if every step went as the
// mode expects, so a run is self-checking; the Rust test still asserts on the details, because
// "went as expected" here is deliberately coarse (success or refusal).
//
// Modes:
//   user    the token holds the role the test policy grants: everything works except the calls
//           the policy refuses (get-sum, a blob resource, resource-prompt).
//   norole  the token holds no role: the handshake and protocol plumbing work, every list comes
//           back empty and every call, read and prompt is refused.
//   long    the role's token, one tool call whose response stream stays open for LONG_SECONDS
//           (default 3) with a progress notification each second, then the session ends.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ListRootsRequestSchema
} from '@modelcontextprotocol/sdk/types.js';

const [url, mode] = process.argv.slice(2);
const token = process.env.MCP_TOKEN;
if (!url || !['user', 'norole', 'long'].includes(mode) || !token) {
    console.error('usage: MCP_TOKEN=<token> node client.mjs <endpoint URL> <user|norole|long>');
    process.exit(2);
}

// Generous: the gateway and the upstream run on a loaded 2-core CI machine. A test that expects
// a step to hang (a cut stream) may shorten it.
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS ?? '60000');
const ROOT = { uri: 'file:///peers/workspace', name: 'peers-workspace' };
const SAMPLING_ANSWER = 'canned sampling answer from the peers client';
const ELICITED_NAME = 'Peer Test Person';

let failures = 0;
function report(step, expected, ok, details) {
    const asExpected = (expected === 'ok') === ok;
    if (!asExpected) failures += 1;
    console.log(JSON.stringify({ step, ok, expected, as_expected: asExpected, ...details }));
}

// Runs one step: `fn` returns details on success; a thrown error becomes an error line carrying
// the HTTP status the SDK saw (StreamableHTTPError.code) or the JSON-RPC code (McpError.code).
async function step(name, expected, fn) {
    try {
        const details = await fn();
        report(name, expected, true, details ?? {});
        return details;
    } catch (e) {
        report(name, expected, false, {
            error: String(e?.message ?? e),
            code: typeof e?.code === 'number' ? e.code : null
        });
        return undefined;
    }
}

function texts(result) {
    return (result?.content ?? []).filter(c => c.type === 'text').map(c => c.text);
}

// Every HTTP exchange the SDK makes, so the test can see the GET stream and the DELETE.
const exchanges = [];
async function recordingFetch(input, init) {
    const method = init?.method ?? 'GET';
    const response = await fetch(input, init);
    exchanges.push({
        method,
        status: response.status,
        content_type: response.headers.get('content-type')
    });
    return response;
}

// Server-to-client requests answered by this "agent"; counted so the test sees each round trip.
const served = { sampling: 0, elicitation: 0, roots: 0 };

const client = new Client(
    { name: 'authz-gateway-peers-client', version: '0.0.0' },
    {
        capabilities: {
            sampling: {},
            elicitation: { form: {} },
            roots: { listChanged: true }
        }
    }
);
client.setRequestHandler(CreateMessageRequestSchema, async request => {
    served.sampling += 1;
    const asked = request.params.messages.map(m => m.content?.text ?? '').join(' ');
    return {
        model: 'peers-canned-model',
        role: 'assistant',
        stopReason: 'endTurn',
        content: { type: 'text', text: `${SAMPLING_ANSWER} (asked: ${asked})` }
    };
});
client.setRequestHandler(ElicitRequestSchema, async () => {
    served.elicitation += 1;
    return {
        action: 'accept',
        content: { name: ELICITED_NAME, check: true, email: 'peer@example.com', integer: 7 }
    };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
    served.roots += 1;
    return { roots: [ROOT] };
});
// Notifications the server pushes (logging, list changes) are counted, not asserted: their
// timing is the server's business.
let serverNotifications = 0;
client.fallbackNotificationHandler = async () => {
    serverNotifications += 1;
};

const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    fetch: recordingFetch,
    // A refused or cut GET stream must show up as a failed step, not as endless retries.
    reconnectionOptions: {
        initialReconnectionDelay: 200,
        maxReconnectionDelay: 1000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 2
    }
});
const transportErrors = [];
transport.onerror = e => transportErrors.push(String(e?.message ?? e));

const allowed = mode === 'user' ? 'ok' : 'error';
const opts = { timeout: STEP_TIMEOUT_MS };

const connected = await step('connect', 'ok', async () => {
    await client.connect(transport, opts);
    return {
        session_id: transport.sessionId ?? null,
        protocol_version: transport.protocolVersion ?? null,
        server_name: client.getServerVersion()?.name ?? null
    };
});
if (!connected) {
    console.log(JSON.stringify({ step: 'summary', ok: false, failures: failures, exchanges, transport_errors: transportErrors }));
    process.exit(1);
}

if (mode === 'long') {
    // One call whose SSE stream stays open for LONG_SECONDS, then the end of the session.
    const seconds = Number(process.env.LONG_SECONDS ?? '3');
    await step('call_long', 'ok', async () => {
        const progress = [];
        const r = await client.callTool(
            { name: 'trigger-long-running-operation', arguments: { duration: seconds, steps: seconds } },
            undefined,
            { ...opts, onprogress: p => progress.push(p.progress) }
        );
        return { is_error: r.isError ?? false, texts: texts(r), progress };
    });
    await step('terminate_session', 'ok', async () => {
        await transport.terminateSession();
        return {};
    });
    await client.close();
    console.log(JSON.stringify({ step: 'summary', ok: failures === 0, failures, served, exchanges, transport_errors: transportErrors }));
    process.exit(failures === 0 ? 0 : 1);
}

await step('list_tools', 'ok', async () => {
    const { tools } = await client.listTools({}, opts);
    return { names: tools.map(t => t.name).sort() };
});

await step('call_echo', allowed, async () => {
    const r = await client.callTool({ name: 'echo', arguments: { message: 'hello through the gateway' } }, undefined, opts);
    return { is_error: r.isError ?? false, texts: texts(r) };
});

await step('call_progress', allowed, async () => {
    const progress = [];
    const r = await client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 4 } },
        undefined,
        { ...opts, onprogress: p => progress.push(p.progress) }
    );
    return { is_error: r.isError ?? false, texts: texts(r), progress };
});

await step('call_sampling', allowed, async () => {
    const before = served.sampling;
    const r = await client.callTool(
        { name: 'trigger-sampling-request', arguments: { prompt: 'say something', maxTokens: 20 } },
        undefined,
        opts
    );
    return { is_error: r.isError ?? false, texts: texts(r), sampling_requests: served.sampling - before };
});

await step('call_elicitation', allowed, async () => {
    const before = served.elicitation;
    const r = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} }, undefined, opts);
    return { is_error: r.isError ?? false, texts: texts(r), elicitation_requests: served.elicitation - before };
});

// get-roots-list makes the server ask `roots/list` outside any client request, so the question
// travels on the standalone GET stream: this step fails if the gateway does not carry it.
await step('call_roots', allowed, async () => {
    const r = await client.callTool({ name: 'get-roots-list', arguments: {} }, undefined, opts);
    return { is_error: r.isError ?? false, texts: texts(r), roots_requests: served.roots };
});

await step('list_resources', 'ok', async () => {
    const { resources } = await client.listResources({}, opts);
    return { uris: resources.map(r => r.uri).sort() };
});

await step('list_resource_templates', 'ok', async () => {
    const { resourceTemplates } = await client.listResourceTemplates({}, opts);
    return { uri_templates: resourceTemplates.map(t => t.uriTemplate).sort() };
});

await step('read_resource', allowed, async () => {
    const uri = 'demo://resource/dynamic/text/1';
    const r = await client.readResource({ uri }, opts);
    return { uri, contents: r.contents.map(c => ({ uri: c.uri, text: c.text ?? null })) };
});

await step('list_prompts', 'ok', async () => {
    const { prompts } = await client.listPrompts({}, opts);
    return { names: prompts.map(p => p.name).sort() };
});

await step('get_prompt', allowed, async () => {
    const r = await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Lisbon' } }, opts);
    return { texts: r.messages.map(m => m.content?.text ?? null) };
});

await step('ping', 'ok', async () => {
    await client.ping(opts);
    return {};
});

// Refused by policy in every mode.
await step('refused_call', 'error', async () => {
    const r = await client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }, undefined, opts);
    return { is_error: r.isError ?? false, texts: texts(r) };
});
await step('refused_read', 'error', async () => {
    const r = await client.readResource({ uri: 'demo://resource/dynamic/blob/1' }, opts);
    return { contents: r.contents.length };
});
await step('refused_prompt', 'error', async () => {
    const r = await client.getPrompt({ name: 'resource-prompt', arguments: { resourceType: 'Text', resourceId: '1' } }, opts);
    return { messages: r.messages.length };
});

const sessionId = transport.sessionId;
await step('terminate_session', 'ok', async () => {
    await transport.terminateSession();
    return { session_id_after: transport.sessionId ?? null };
});

// The ended session must be gone: the gateway forgot its binding, so it answers 404 itself.
await step('after_termination', 'error', async () => {
    const response = await fetch(url, {
        method: 'POST',
        headers: {
            Authorization: `Bearer ${token}`,
            'Content-Type': 'application/json',
            Accept: 'application/json, text/event-stream',
            'Mcp-Session-Id': sessionId ?? '',
            'Mcp-Protocol-Version': transport.protocolVersion ?? '2025-11-25'
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 999, method: 'tools/list', params: {} })
    });
    const body = await response.text();
    if (!response.ok) {
        const e = new Error(`HTTP ${response.status}: ${body}`);
        e.code = response.status;
        throw e;
    }
    return { status: response.status, body };
});

await client.close();

console.log(
    JSON.stringify({
        step: 'summary',
        ok: failures === 0,
        failures,
        served,
        server_notifications: serverNotifications,
        exchanges,
        transport_errors: transportErrors
    })
);
process.exit(failures === 0 ? 0 : 1);
