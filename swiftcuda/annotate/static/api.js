// The server's API, with the session's token on every request.

const token = new URLSearchParams(window.location.search).get("token") ?? "";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A URL of the server that carries the token (for links). */
export function withToken(path) {
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

/** fetch() with the token; a failure becomes an ApiError holding the server's one-line reason. */
export async function request(method, path, { json, body, signal } = {}) {
  const headers = { "X-Swiftcuda-Token": token };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/octet-stream";
  }
  const response = await fetch(path, { method, headers, body, signal });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const reply = await response.json();
      if (reply.error) message = reply.error;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function getJSON(path) {
  return (await request("GET", path)).json();
}

export async function sendJSON(method, path, json = {}) {
  return (await request(method, path, { json })).json();
}

/** Frame `index`'s picture, decoded. */
export async function fetchPicture(index, signal) {
  const response = await request("GET", `api/frames/${index}/image`, { signal });
  return createImageBitmap(await response.blob());
}

/** Frame `index`'s labels (Uint8Array, one byte a pixel, or null) and their kind. */
export async function fetchMask(index, signal) {
  const response = await request("GET", `api/frames/${index}/mask`, { signal });
  const kind = response.headers.get("X-Mask-Kind") ?? "none";
  if (response.status === 204) return { kind, labels: null };
  return { kind, labels: new Uint8Array(await response.arrayBuffer()) };
}

export async function putMask(index, labels) {
  return (await request("PUT", `api/frames/${index}/mask`, { body: labels })).json();
}

export async function deleteMask(index) {
  return (await request("DELETE", `api/frames/${index}/mask`)).json();
}

/** The object GrabCut finds in `box` ([x0, y0, x1, y1]) on frame `index`: a Uint8Array of 0 and 1. */
export async function grabcut(index, box) {
  const response = await request("POST", `api/frames/${index}/grabcut`, { json: { box } });
  return new Uint8Array(await response.arrayBuffer());
}
