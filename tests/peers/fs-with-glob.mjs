// `node:fs` plus the one `globSync` form the conformance CLI uses: `globSync('**/<name>', { cwd })`
// (every file called <name> below cwd, as paths relative to it) and a plain relative path. Any
// other pattern throws, so a new use in a later CLI version fails loudly instead of matching
// nothing.
import fs from 'node:fs';
import path from 'node:path';

export * from 'node:fs';
export default fs;

export function globSync(pattern, options = {}) {
    const cwd = options.cwd ?? process.cwd();
    if (typeof pattern !== 'string' || /[*?[\]{}]/.test(pattern.replace(/^\*\*\//, ''))) {
        throw new Error(`fs-with-glob: unsupported glob pattern ${JSON.stringify(pattern)}`);
    }
    if (!pattern.startsWith('**/')) {
        return fs.existsSync(path.join(cwd, pattern)) ? [pattern] : [];
    }
    const name = pattern.slice(3);
    const found = [];
    const walk = (dir) => {
        for (const entry of fs.readdirSync(path.join(cwd, dir), { withFileTypes: true })) {
            const rel = dir === '' ? entry.name : path.join(dir, entry.name);
            if (entry.isDirectory()) {
                walk(rel);
            } else if (entry.name === name) {
                found.push(rel);
            }
        }
    };
    walk('');
    return found.sort();
}
