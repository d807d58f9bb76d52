"""Security headers on every response the app sends: a Content-Security-Policy, no framing, no sniffing."""

#: The pages load their scripts, styles and socket.io-client from this origin, and connect back to it
#: (REST and Socket.IO, websockets included); nothing inline, no plugin, no other site may frame them.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"


def init_security_headers(app):
    """Add the headers to every response of ``app``; HSTS too when session cookies are HTTPS-only."""
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if app.config["SESSION_COOKIE_SECURE"]:
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def add_security_headers(response):
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
