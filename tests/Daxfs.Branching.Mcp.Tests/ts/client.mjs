// The reference TypeScript MCP client against `daxfs mcp` over stdio: lists the tools, then forks, writes, runs,
// diffs and commits. Prints one JSON report on stdout; exits non-zero on any failure.
// usage: node client.mjs COMMAND [ARGS...]   (the command that starts the server)
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [command, ...args] = process.argv.slice(2);
const client = new Client({ name: 'daxfs-ts-check', version: '1.0.0' });
await client.connect(new StdioClientTransport({ command, args, env: { ...process.env }, stderr: 'inherit' }));

async function call(name, args) {
  const result = await client.callTool({ name, arguments: args });
  const text = result.content.map(c => c.text).join('');
  if (result.isError) throw new Error(`${name} failed: ${text}`);
  return JSON.parse(text);
}

try {
  const { tools } = await client.listTools();
  const report = { tools: tools.map(t => t.name) };
  report.fork = await call('fork', { name: 'ts-agent' });
  report.write = await call('write_file', { branch: 'ts-agent', path: '/src/app.py', content: 'def answer():\n    return 42\n\nprint(answer())\n' });
  report.run = await call('run', { branch: 'ts-agent', argv: ['sh', 'test.sh'] });
  report.diff = await call('diff', { from: 'main', to: 'ts-agent' });
  report.commit = await call('commit', { branch: 'ts-agent', message: 'from the TypeScript client' });
  console.log(JSON.stringify(report));
} finally {
  await client.close();
}
