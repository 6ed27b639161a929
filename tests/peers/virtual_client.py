"""An MCP agent built only from the official Python SDK (`mcp`, pinned in requirements.txt and
installed by .ci/run into tests/peers/.venv), for the gateway's virtual server test
(crates/authz-gateway/tests/it/virtual_servers.rs).

Usage: MCP_TOKEN=<bearer token> .venv/bin/python virtual_client.py <endpoint URL> <legacy|2026-07-28>

`legacy` opens an initialize-handshake session; `2026-07-28` speaks the stateless protocol
(server/discover, then self-contained requests). Prints one JSON line, as virtual-client.mjs does.
"""

import asyncio
import json
import os
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text_of(result):
    for item in result.content:
        if getattr(item, "type", None) == "text":
            return item.text
    return None


async def main(url: str, mode: str) -> None:
    token = os.environ["MCP_TOKEN"]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    out = {}
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None) as client:
            tools, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(t.name for t in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            out["tools"] = tools
            out["prompts"] = [p.name for p in (await client.list_prompts()).prompts]
            out["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
            out["echo"] = text_of(await client.call_tool("files_echo", {"text": "via python"}))
            out["ticket"] = text_of(await client.call_tool("tickets_get_ticket", {"id": 1}))
            read = await client.read_resource("tickets+tickets://open")
            out["read"] = str(read.contents[0].uri) if read.contents else None
            prompt = await client.get_prompt("tickets_triage_ticket", {"id": "1"})
            out["prompt"] = len(prompt.messages)
            try:
                r = await client.call_tool("files_wipe", {})
                out["wipe"] = "tool error" if r.is_error else "allowed"
            except Exception as e:  # the SDK raises on a JSON-RPC error
                out["wipe"] = f"refused {getattr(getattr(e, 'error', None), 'code', '')}".strip()
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) != 3 or "MCP_TOKEN" not in os.environ:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
