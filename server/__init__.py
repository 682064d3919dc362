"""edgekv's network servers: RESP and the Cloudflare-compatible REST API, over one store."""
