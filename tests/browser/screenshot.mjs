// Saves a screenshot of a dashboard once it is live: `node screenshot.mjs URL OUT.png [WIDTH]`.
// The README's picture is taken with it from `make demo`.
import { chromium } from 'playwright-core';

const [url, out, width] = process.argv.slice(2);
if (!url || !out) {
  console.error('usage: node screenshot.mjs URL OUT.png [WIDTH]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: Number(width || 1280), height: 900 } });
await page.goto(url);
await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 20000 });
await page.screenshot({ path: out, fullPage: true });
await browser.close();
console.log(`saved ${out}`);
