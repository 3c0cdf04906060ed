"""POST /v1/uploads: a presigned POST policy for one image, so image bytes never pass through the collector.

Invariant: the write key is admitted before any body byte is read, and at most ``max_job_body_bytes``
are read. The policy fixes the object key, the image content type asked for and a size range of
1..``max_upload_bytes``, for ``upload_url_ttl_s``. The ticket's ``upload_token`` binds the input to
the ``anonymous_id`` that asked, and POST /v1/jobs takes the input only with it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from funnelstream.objectstore import input_key, presigned_upload
from ingest.access import Source
from ingest.routes.common import KeyFirstRoute, admitted_source, error_responses
from ingest.schemas import UPLOAD_EXTENSIONS, UploadRequest, UploadTicket
from ingest.state import state_of
from ingest.upload_tokens import upload_token
from ingest.web import cors_headers, json_response, preflight

router = APIRouter(tags=["uploads"], route_class=KeyFirstRoute)


@router.post(
    "/v1/uploads",
    summary="Get an input_id, its upload token and a presigned POST policy for one image",
    response_model=UploadTicket,
    responses=error_responses(401, 403, 413, 429),
)
async def create_upload(
    request: Request, upload: UploadRequest, source: Annotated[Source, Depends(admitted_source)]
) -> Response:
    state = state_of(request)
    config = state.config
    now = datetime.now(UTC)
    input_id = uuid.uuid4()
    key = input_key(input_id, now, UPLOAD_EXTENSIONS[upload.content_type])
    expires_at = now + timedelta(seconds=config.upload_url_ttl_s)
    url, fields = presigned_upload(
        state.presigner, state.settings.s3, key, upload.content_type, config.max_upload_bytes, expires_at
    )
    ticket = UploadTicket(
        input_id=input_id,
        input_key=key,
        upload_token=upload_token(config.upload_token_secret, input_id, key, upload.anonymous_id),
        upload_url=url,
        fields=fields,
        max_bytes=config.max_upload_bytes,
        expires_at=expires_at,
    )
    return json_response(ticket.model_dump(mode="json"), 200, cors_headers(state.access, request.headers.get("origin")))


@router.options("/v1/uploads", include_in_schema=False)
async def uploads_preflight(request: Request) -> Response:
    return preflight(state_of(request).access, request, "POST")
