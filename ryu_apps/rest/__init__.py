"""REST API v1 (`/mam/v1`): a plain WSGI application on webob, served by the app's hub."""
