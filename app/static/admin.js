// Admin page enhancements. Everything works without JavaScript; this adds a live
// activity panel, drag-and-drop reordering and a sparkline entity choice that needs no button on top.
(function () {
  'use strict';

  function formatTime(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function renderEvents(list, events) {
    list.replaceChildren();
    if (!events.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'Nothing sent yet.';
      list.append(li);
      return;
    }
    for (const event of events) {
      const li = document.createElement('li');
      const time = document.createElement('time');
      time.dataset.at = event.at;
      time.textContent = formatTime(event.at);
      const name = document.createElement('code');
      name.textContent = event.event;
      const to = document.createElement('span');
      to.className = 'muted';
      to.textContent = '→ ' + event.recipients;
      li.append(time, ' ', name, ' ' + event.summary + ' ', to);
      list.append(li);
    }
  }

  function watchActivity() {
    const panel = document.getElementById('activity');
    if (!panel) return;
    panel.querySelectorAll('time[data-at]').forEach((t) => { t.textContent = formatTime(Number(t.dataset.at)); });
    const count = document.getElementById('subscriber-count');
    const list = document.getElementById('recent-events');
    const version = document.getElementById('dashboard-version');
    const coverage = document.getElementById('activity-coverage');
    async function refresh() {
      if (document.hidden) return;
      try {
        const response = await fetch(panel.dataset.url, { headers: { Accept: 'application/json' } });
        if (!response.ok) return;
        const data = await response.json();
        count.textContent = data.subscribers;
        count.nextElementSibling.textContent = data.subscribers === 1 ? 'socket subscribed now' : 'sockets subscribed now';
        renderEvents(list, data.events);
        if (coverage) coverage.textContent = data.coverage;
        if (version && String(data.version) !== version.dataset.version) {
          version.textContent = 'version ' + data.version + ' — changed elsewhere, reload';
          version.classList.add('stale');
        }
      } catch (e) { /* the next round tries again */ }
    }
    setInterval(refresh, 2000);
  }

  function dragToReorder() {
    const list = document.getElementById('tile-list');
    const form = document.getElementById('reorder-form');
    if (!list || !form) return;
    let dragged = null;
    list.classList.add('draggable');
    for (const row of list.querySelectorAll('.tile-row')) {
      row.draggable = true;
      row.addEventListener('dragstart', (e) => {
        dragged = row;
        row.classList.add('dragging');
        e.dataTransfer.effectAllowed = 'move';
      });
      row.addEventListener('dragend', () => row.classList.remove('dragging'));
      row.addEventListener('dragover', (e) => {
        if (!dragged || dragged === row) return;
        e.preventDefault();
        const box = row.getBoundingClientRect();
        const after = e.clientY > box.top + box.height / 2;
        row.parentNode.insertBefore(dragged, after ? row.nextSibling : row);
      });
    }
    list.addEventListener('drop', (e) => {
      e.preventDefault();
      if (!dragged) return;
      dragged = null;
      const ids = [...list.querySelectorAll('.tile-row')].map((r) => r.dataset.tileId);
      const field = form.querySelector('input[name="tile_ids"]');
      if (field.value === ids.join(',')) return;
      field.value = ids.join(',');
      form.submit();
    });
  }

  // Choosing another entity for the sparklines shows its values at once (the Show button does it without JavaScript).
  function switchSparklineEntity() {
    const select = document.getElementById('sparkline-entity-select');
    if (select) select.addEventListener('change', () => select.form.submit());
  }

  watchActivity();
  dragToReorder();
  switchSparklineEntity();
})();
