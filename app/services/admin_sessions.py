"""Admin page sessions: started on sign-in, looked up on every admin request, ended everywhere on sign-out.

The signed session cookie carries only a random session id; the row holds the
tenant, the subject and the expiry. Deleting the row ends the session on every
worker and node at once, whatever copies of the cookie exist.
"""

import secrets
import time

from sqlalchemy import delete, select

from app.database import write_transaction
from app.extensions import db
from app.models import AdminSession


def start_admin_session(tenant_id, subject, expires_at, replacing=None):
    """Start a session and return its id; the session ``replacing`` (this browser's earlier one) ends.

    Signing in again in a browser so ends every copy of its earlier cookie; the
    subject's sessions in other browsers go on. Sessions past their expiry are
    removed on the way.
    """
    session_id = secrets.token_urlsafe(32)
    with write_transaction() as session:
        session.execute(delete(AdminSession).where(AdminSession.expires_at <= time.time()))
        if isinstance(replacing, str):
            session.execute(delete(AdminSession).where(AdminSession.id == replacing))
        session.add(AdminSession(id=session_id, tenant_id=tenant_id, subject=subject or "", expires_at=expires_at))
    return session_id


def admin_session(session_id):
    """The live session ``{tenant, subject, expires_at}`` with that id, or None (ended, expired or unknown)."""
    if not isinstance(session_id, str):
        return None
    row = db.session.execute(
        select(AdminSession.tenant_id, AdminSession.subject, AdminSession.expires_at).where(
            AdminSession.id == session_id
        )
    ).first()
    db.session.rollback()
    if row is None or row.expires_at <= time.time():
        return None
    return {"tenant": row.tenant_id, "subject": row.subject or None, "expires_at": row.expires_at}


def end_admin_session(session_id):
    """End the session with that id everywhere (nothing happens for an unknown one)."""
    if not isinstance(session_id, str):
        return
    with write_transaction() as session:
        session.execute(delete(AdminSession).where(AdminSession.id == session_id))
