import pkg from "../package.json" with { type: "json" };

/** The service's version, as package.json gives it. */
export const VERSION: string = pkg.version;
