// The Durable Streams conformance suite as a test file of our own: the package's CLI
// (`server-conformance-tests --run URL`) finds no test files once installed under
// node_modules, which vitest excludes. install.sh copies this file next to node_modules;
// tests/http/test_durable_streams_conformance.py runs it with vitest's JSON reporter.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

runConformanceTests({ baseUrl: process.env.CONFORMANCE_TEST_URL })
