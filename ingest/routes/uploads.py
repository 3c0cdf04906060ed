"""POST /v1/uploads: a presigned PUT URL, so image bytes never pass through the collector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from funnelstream.objectstore import input_key
from ingest.access import Source
from ingest.routes.common import authorized_source, error_responses
from ingest.schemas import UPLOAD_EXTENSIONS, UploadRequest, UploadTicket
from ingest.state import state_of
from ingest.web import cors_headers, json_response, preflight

router = APIRouter(tags=["uploads"])


@router.post(
    "/v1/uploads",
    summary="Get an input_id and a presigned PUT URL for one image",
    response_model=UploadTicket,
    responses=error_responses(401, 403, 429),
)
async def create_upload(
    request: Request, upload: UploadRequest, source: Annotated[Source, Depends(authorized_source)]
) -> Response:
    state = state_of(request)
    now = datetime.now(UTC)
    input_id = uuid.uuid4()
    key = input_key(input_id, now, UPLOAD_EXTENSIONS[upload.content_type])
    ttl = timedelta(seconds=state.config.upload_url_ttl_s)
    url = state.presigner.presigned_put_object(state.settings.s3.bucket, key, expires=ttl)
    ticket = UploadTicket(
        input_id=input_id,
        input_key=key,
        upload_url=url,
        headers={"Content-Type": upload.content_type},
        expires_at=now + ttl,
    )
    return json_response(ticket.model_dump(mode="json"), 200, cors_headers(state.access, request.headers.get("origin")))


@router.options("/v1/uploads", include_in_schema=False)
async def uploads_preflight(request: Request) -> Response:
    return preflight(state_of(request).access, request, "POST")
