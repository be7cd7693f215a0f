"""The /health peer: a bare Falcon app returning the same body under waitress."""

import logging
import sys

import falcon
import waitress


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status": "ok"}'
        resp.content_type = falcon.MEDIA_JSON


def main() -> None:
    # waitress warns on every queued task; jameyd logs them, but not here.
    logging.getLogger('waitress').setLevel(logging.ERROR)
    app = falcon.App()
    app.add_route('/health', Health())
    waitress.serve(
        app, unix_socket=sys.argv[1], threads=int(sys.argv[2]), ident='', _quiet=True
    )


if __name__ == '__main__':
    main()
