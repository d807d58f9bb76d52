"""The entry point. gevent patches the standard library before anything else is imported.

* gunicorn: ``gunicorn -c gunicorn.conf.py`` (which names ``wsgi:app``) serves ``app``; its
  ``post_worker_init`` hook starts each worker's background work (``app.serving``);
* Flask CLI: ``flask --app wsgi ...`` finds ``app`` and starts nothing.
"""

from gevent import monkey

monkey.patch_all()

from app import create_app  # noqa: E402

app = create_app()
