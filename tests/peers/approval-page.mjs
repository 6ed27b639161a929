#!/usr/bin/env node
// The approval story as a person and an agent live it, driven by the gateway's integration
// tests (crates/authz-gateway/tests/it/approvals.rs): an agent built only from the official
// TypeScript SDK calls a tool an approve rule holds, and gets the SDK's own
// UrlElicitationRequiredError; an approver opens the URL it names in a real headless Chromium
// (Debian's package), logs in with a token, sees the call, its arguments and who asked, and
// approves it; the agent's retry then succeeds.
//
// Usage: AGENT_TOKEN=<token> APPROVER_TOKEN=<token> node approval-page.mjs <MCP endpoint URL>
// (tokens travel in the environment so they stay out of process listings; CHROMIUM overrides
// the browser path, default /usr/bin/chromium).
//
// Prints one JSON line per step ({"step": ..., ...details}) and a final {"step": "summary",
// "ok": bool}; exits 0 only if every step went as expected.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import puppeteer from 'puppeteer-core';

const [endpoint] = process.argv.slice(2);
const agentToken = process.env.AGENT_TOKEN;
const approverToken = process.env.APPROVER_TOKEN;
if (!endpoint || !agentToken || !approverToken) {
    console.error('usage: AGENT_TOKEN=… APPROVER_TOKEN=… node approval-page.mjs <endpoint URL>');
    process.exit(2);
}

let ok = true;
const report = (step, good, details = {}) => {
    ok &&= good;
    console.log(JSON.stringify({ step, ok: good, ...details }));
};

async function connect() {
    const client = new Client({ name: 'approval-agent', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(endpoint), {
        requestInit: { headers: { Authorization: `Bearer ${agentToken}` } }
    });
    await client.connect(transport);
    return client;
}

const client = await connect();
const args = { id: 2 };

// 1. The held call: the SDK raises its own error type, carrying the approval page's URL.
let url;
try {
    const result = await client.callTool({ name: 'delete_ticket', arguments: args });
    report('held', false, { unexpected: result });
} catch (e) {
    const held = e instanceof UrlElicitationRequiredError;
    url = held ? e.elicitations[0]?.url : undefined;
    report('held', held && typeof url === 'string', {
        error: String(e),
        url,
        elicitationId: held ? e.elicitations[0]?.elicitationId : undefined
    });
}

// 2. The approver, in a real browser.
const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
});
try {
    const page = await browser.newPage();
    page.setDefaultTimeout(30000);
    await page.goto(url, { waitUntil: 'load' });
    const loginShown = (await page.$('#token')) !== null;
    report('login form', loginShown, { title: await page.title() });
    await page.type('#token', approverToken);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#login')]);
    // Logged in: the list of pending approvals, which links to the held call.
    const listed = await page.$$eval('#pending a', (links) => links.map((a) => a.textContent));
    const id = new URL(url).pathname.split('/').pop();
    report('pending list', listed.includes(id), {
        listed,
        at: page.url(),
        problem: await page.$eval('#problem', (el) => el.textContent).catch(() => null)
    });
    await page.goto(url, { waitUntil: 'load' });
    const shown = {
        tool: await page.$eval('#tool', (el) => el.textContent),
        subject: await page.$eval('#subject', (el) => el.textContent),
        arguments: JSON.parse(await page.$eval('#arguments', (el) => el.textContent)),
        state: await page.$eval('#state', (el) => el.textContent)
    };
    report(
        'the held call',
        shown.tool === 'delete_ticket' &&
            shown.subject.startsWith('sue ') &&
            shown.arguments.id === args.id &&
            shown.state === 'pending',
        shown
    );
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#approve')]);
    const state = await page.$eval('#state', (el) => el.textContent);
    report('approved', state === 'approved', { state });
} catch (e) {
    report('browser', false, { error: String(e) });
} finally {
    await browser.close();
}

// 3. The agent's retry of the identical call goes through.
try {
    const result = await client.callTool({ name: 'delete_ticket', arguments: args });
    const text = result.content?.[0]?.text ?? '';
    report('retry', !result.isError, { text });
} catch (e) {
    report('retry', false, { error: String(e) });
}
await client.close();
console.log(JSON.stringify({ step: 'summary', ok }));
process.exit(ok ? 0 : 1);
