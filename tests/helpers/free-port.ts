/** Tests take free ports from the same helper the service uses for its embedded database. */
export { freePort } from "../../src/util/free-port.ts";
