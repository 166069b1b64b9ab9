// The reference server of the Durable Streams protocol, for benchmarks/durable_streams.py:
//   node ref_server.mjs PORT LONG_POLL_MS [DATA_DIR]
// in memory without DATA_DIR, file-backed (lmdb plus segment files) with it. Prints its URL
// once it listens; SIGTERM stops it cleanly (SIGKILL is the benchmark's crash).
import { DurableStreamTestServer } from "@durable-streams/server"

const [port, longPollTimeout, dataDir] = process.argv.slice(2)
const server = new DurableStreamTestServer({
  port: Number(port),
  host: "127.0.0.1",
  longPollTimeout: Number(longPollTimeout),
  ...(dataDir ? { dataDir } : {}),
})
await server.start()
console.log(server.url)
process.on("SIGTERM", async () => {
  await server.stop()
  process.exit(0)
})
