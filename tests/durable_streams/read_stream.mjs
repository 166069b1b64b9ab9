// Reads a Durable Stream with the protocol's TypeScript client from an offset: catch-up until
// up to date, then live until the stream is closed. Prints one JSON line per batch of data
// (the data, its Stream-Next-Offset, the up-to-date and closed flags), then one at the end.
//
//   node read_stream.mjs URL [OFFSET] [LIVE]
//   OFFSET: where to start (default -1, the beginning); LIVE: sse, long-poll, true (the
//   client's choice, the default) or false (catch-up only: stop once up to date)
import { stream } from "@durable-streams/client"

const [url, offset = "-1", live = "true"] = process.argv.slice(2)
const res = await stream({ url, offset, live: { true: true, false: false }[live] ?? live })

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
let delivered // the offset of the last batch the subscriber was given
let onDelivery = () => {}
const deliver = (data) => async (batch) => {
  const content = data(batch)
  if (Object.values(content)[0].length > 0) {
    print({ ...content, offset: batch.offset, upToDate: batch.upToDate, streamClosed: batch.streamClosed })
  }
  delivered = batch.offset
  onDelivery()
}
if (res.contentType?.startsWith("application/json")) {
  res.subscribeJson(deliver((batch) => ({ items: batch.items })))
} else {
  res.subscribeText(deliver((chunk) => ({ text: chunk.text })))
}

// `res.closed` resolves once the client has fetched the last response (it rejects on an
// error), which can be before the subscriber has been given it: wait for that too.
await res.closed
while (delivered !== res.offset) await new Promise((resolve) => (onDelivery = resolve))
print({ end: res.offset, streamClosed: res.streamClosed })
