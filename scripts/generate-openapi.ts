/**
 * Writes openapi/openapi.json from the app's route definitions.
 * Run with `npm run openapi` after changing a route or schema.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative } from "node:path";
import { buildOpenApiDocument, OPENAPI_DOCUMENT_PATH, serializeOpenApiDocument } from "./openapi-document.ts";

mkdirSync(dirname(OPENAPI_DOCUMENT_PATH), { recursive: true });
writeFileSync(OPENAPI_DOCUMENT_PATH, serializeOpenApiDocument(buildOpenApiDocument()));
console.log(`wrote ${relative(process.cwd(), OPENAPI_DOCUMENT_PATH)}`);
