// The kiosk's device credential and request signing.
//
// The credential is a NON-extractable WebCrypto HMAC key kept in IndexedDB with the device id: script on this
// page can sign with it but can never read the secret back. Nothing else is stored, and nothing personal.
// Requests are signed exactly like kiosks/signing.py: HMAC-SHA256 over
//   METHOD \n path?query \n timestamp \n nonce \n sha256(body) hex

// The page's import map turns this plain path into the page's own content-versioned URL: one module instance.
import * as common from "/static/web/common.js";

const { api, ApiError } = common;
export { common, ApiError };

const DB_NAME = "palmhall-kiosk";
const STORE = "device";
const RECORD = "credential";
const enc = new TextEncoder();

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req ? req.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// The secret becomes a key that cannot be exported; the caller drops the string right after.
export function importSecret(secret) {
  return crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

export async function saveDevice({ deviceId, key, hall }) {
  await withStore("readwrite", (store) => store.put({ deviceId, key, hall }, RECORD));
}

export async function loadDevice() {
  try {
    const found = await withStore("readonly", (store) => store.get(RECORD));
    return found && found.deviceId && found.key ? found : null;
  } catch (err) {
    return null;
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// Seconds to add to this machine's clock: learned from the server when it says our clock is off, so a kiosk
// whose clock drifted keeps working (the signature still covers the timestamp and a fresh nonce).
let clockOffset = 0;

export async function signedHeaders(device, method, path, text) {
  const ts = String(Math.floor(Date.now() / 1000) + clockOffset);
  const n = nonce();
  const bodyHash = hex(await crypto.subtle.digest("SHA-256", enc.encode(text)));
  const canonical = [method.toUpperCase(), path, ts, n, bodyHash].join("\n");
  const signature = hex(await crypto.subtle.sign("HMAC", device.key, enc.encode(canonical)));
  return { "X-Kiosk-Id": device.deviceId, "X-Timestamp": ts, "X-Nonce": n, "X-Signature": signature };
}

function learnClock(err) {
  if (err instanceof ApiError && err.code === "kiosk.timestamp_skew" && err.details.server_time) {
    clockOffset = Number(err.details.server_time) - Math.floor(Date.now() / 1000);
    return true;
  }
  return false;
}

// A signed JSON call to /api/v1/kiosk; `path` is relative to it and may carry a query.
export async function kioskApi(device, path, { method = "GET", body } = {}) {
  const full = "/api/v1/kiosk" + path;
  const text = body === undefined ? "" : JSON.stringify(body);
  for (let attempt = 0; ; attempt++) {
    const headers = await signedHeaders(device, method, full, text);
    try {
      return await api(full, { method, headers, body: body === undefined ? undefined : text });
    } catch (err) {
      if (attempt === 0 && learnClock(err)) continue;
      throw err;
    }
  }
}

// A signed GET of an image (the payment QR): answered as a Blob.
export async function kioskBlob(device, path) {
  for (let attempt = 0; ; attempt++) {
    const headers = await signedHeaders(device, "GET", path, "");
    let response;
    try {
      response = await fetch(path, { headers });
    } catch (err) {
      throw new ApiError(0, "network", "网络连接中断，请稍后再试");
    }
    if (response.ok) return await response.blob();
    let e = {};
    try { e = (await response.json()).error || {}; } catch (err) { e = {}; }
    const error = new ApiError(response.status, e.code || "http." + response.status,
                               e.message || "服务暂时不可用，请稍后再试", e.details);
    if (attempt === 0 && learnClock(error)) continue;
    throw error;
  }
}
