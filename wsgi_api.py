"""The REST-only entry point: the HTTP API with no Socket.IO, no poller and no background work.

Unlike ``wsgi.py`` it does not monkey-patch with gevent, so a synchronous server can run it:
``gunicorn -c gunicorn.conf.py -k sync -w 4 wsgi_api:api`` (docs/deployment.md, "REST-only
deployment"), or a serverless WSGI adapter pointed at ``wsgi_api.api``. It is a module of its
own, not ``wsgi:api``: importing ``wsgi`` patches the whole process, whichever name is asked for.
"""

from app import create_app

api = create_app(realtime=False)
