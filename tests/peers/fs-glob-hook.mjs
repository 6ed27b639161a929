// The resolve hook registered by node20-fs-glob.mjs: `fs` imported from inside the conformance
// package resolves to fs-with-glob.mjs.
const shim = new URL('./fs-with-glob.mjs', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
    const fromConformance = (context.parentURL ?? '').includes('/@modelcontextprotocol/conformance/');
    if (fromConformance && (specifier === 'fs' || specifier === 'node:fs')) {
        return { url: shim, shortCircuit: true };
    }
    return nextResolve(specifier, context);
}
