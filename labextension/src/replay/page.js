// The offline replay page's script (jupyter_delegate/replay_page.py inlines its bundle):
// the replay drawn from the JSON the page embeds, with no kernel and no network.
import { render, staticModel } from './replay.js';

function start() {
  const source = document.getElementById('jd-replay-data');
  const el = document.getElementById('jd-replay');
  const data = JSON.parse(source.textContent);
  render({ model: staticModel(data), el });
  el.querySelector('.jdp').focus({ preventScroll: true });
  performance.mark('jd-replay-drawn'); // how long the page took to open, for its tests
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
