"""The HTTP peer: a bare Falcon app under waitress.

``GET /health`` returns the same body as jameyd's; ``POST /evaluate`` parses
the JSON body and answers a fixed evaluation, so the cost of any JSON POST
shows beside jameyd's real one.
"""

import json
import logging
import sys

import falcon
import waitress


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status": "ok"}'
        resp.content_type = falcon.MEDIA_JSON


class Echo:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json.loads(req.bounded_stream.read())
        resp.media = {
            'action': body['action'],
            'score': 0.0,
            'verdict': 'allow',
            'findings': [],
            'rules_version': 1,
        }


def main() -> None:
    # waitress warns on every queued task; jameyd logs them, but not here.
    logging.getLogger('waitress').setLevel(logging.ERROR)
    app = falcon.App()
    app.add_route('/health', Health())
    app.add_route('/evaluate', Echo())
    waitress.serve(
        app, unix_socket=sys.argv[1], threads=int(sys.argv[2]), ident='', _quiet=True
    )


if __name__ == '__main__':
    main()
