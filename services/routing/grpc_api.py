"""The officers' and admins' gRPC services: translate requests to commands and back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import grpc
from lapor.v1 import officer_pb2, officer_pb2_grpc

from services.common.auth import TokenVerifier
from services.common.errors import PermissionDenied, Violation, require
from services.common.grpc_errors import rpc
from services.common.mongo import Doc
from services.common.status import Colour
from services.routing.actions import CaseActions
from services.routing.domain import access
from services.routing.domain.access import Actor
from services.routing.domain.case import Command, Role
from services.routing.domain.directory import Directory, Institution
from services.routing.institutions import InstitutionRegistry
from services.routing.metrics import CASE_ACTIONS
from services.routing.queries import CaseQueries, Page, page_window
from services.routing.rules_source import RulesSource
from services.routing.views import COLOUR_NAMES, institution_view, report_view


@dataclass
class Api:
    verifier: TokenVerifier
    actions: CaseActions
    queries: CaseQueries
    registry: InstitutionRegistry
    rules: RulesSource

    @property
    def directory(self) -> Callable[[], Directory]:
        return self.registry

    async def actor(self, context: grpc.aio.ServicerContext) -> Actor:
        principal = self.verifier.from_metadata(context.invocation_metadata())
        actor = Actor(principal.subject, principal.institution, Role(principal.role))
        if not actor.is_national_admin:
            await self.registry.knows(actor.institution)  # a unit added through another replica
        access.require_known_institution(actor, self.directory())
        return actor

    async def act(
        self, context: grpc.aio.ServicerContext, request: object, command: Command
    ) -> officer_pb2.Report:
        actor = await self.actor(context)
        tracking_id = getattr(request, "tracking_id", "")
        version = int(getattr(request, "expected_version", 0))
        full = replace(command, role=actor.role, actor_id=actor.subject)
        doc = await self.actions.act(actor, tracking_id, full, expected_version=version)
        CASE_ACTIONS.labels(action=command.action).inc()
        return await self.view(doc, actor)

    async def view(self, doc: Doc, actor: Actor) -> officer_pb2.Report:
        similar = await self.similar([doc], actor)
        return report_view(doc, actor, self.directory(), similar[doc["_id"]])

    async def page(self, page: Page, actor: Actor) -> officer_pb2.ListReportsResponse:
        directory = self.directory()
        similar = await self.similar(page.docs, actor)
        return officer_pb2.ListReportsResponse(
            reports=[report_view(d, actor, directory, similar[d["_id"]]) for d in page.docs],
            next_page_token=page.next_token,
        )

    async def similar(self, docs: list[Doc], actor: Actor) -> dict[str, list[str]]:
        """Each report's similar reports (those it names and the later ones naming it),
        only those `actor` may see: a link never shows the tracking id of a report that
        another institution holds (the link was made when both were routed alike; a forward
        or decline may have moved one since)."""
        store = self.queries.store
        back = await store.linked_from([d["_id"] for d in docs])
        related = {
            d["_id"]: list(dict.fromkeys([*d.get("similar", []), *back[d["_id"]]])) for d in docs
        }
        if actor.is_national_admin:
            return related
        directory = self.directory()
        holders = await store.holders({i for ids in related.values() for i in ids})
        return {
            tid: [i for i in ids if i in holders and access.can_see(actor, holders[i], directory)]
            for tid, ids in related.items()
        }


def _colour(value: int) -> Colour | None:
    return Colour(COLOUR_NAMES[value]) if value in COLOUR_NAMES else None


class OfficerServicer(officer_pb2_grpc.OfficerServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    @rpc("ListReports")
    async def ListReports(self, request, context):  # type: ignore[no-untyped-def]
        actor = await self.api.actor(context)
        page = await self.api.queries.reports(
            actor,
            request.state,
            _colour(request.colour),
            request.overdue_only,
            request.topic,
            request.page_size,
            request.page_token,
        )
        return await self.api.page(page, actor)

    @rpc("GetReport")
    async def GetReport(self, request, context):  # type: ignore[no-untyped-def]
        actor = await self.api.actor(context)
        doc = await self.api.actions.load(actor, request.tracking_id)
        return await self.api.view(doc, actor)

    @rpc("Accept")
    async def Accept(self, request, context):  # type: ignore[no-untyped-def]
        return await self.api.act(context, request, Command("accepted", Role.OFFICER))

    @rpc("Forward")
    async def Forward(self, request, context):  # type: ignore[no-untyped-def]
        command = Command(
            "forwarded", Role.OFFICER, institution_id=request.institution_id, reason=request.reason
        )
        return await self.api.act(context, request, command)

    @rpc("Decline")
    async def Decline(self, request, context):  # type: ignore[no-untyped-def]
        return await self.api.act(
            context, request, Command("declined", Role.OFFICER, reason=request.reason)
        )

    @rpc("Respond")
    async def Respond(self, request, context):  # type: ignore[no-untyped-def]
        return await self.api.act(
            context, request, Command("responded", Role.OFFICER, text=request.text)
        )

    @rpc("RequestInformation")
    async def RequestInformation(self, request, context):  # type: ignore[no-untyped-def]
        return await self.api.act(
            context, request, Command("info_requested", Role.OFFICER, text=request.text)
        )

    @rpc("SetHandlingClass")
    async def SetHandlingClass(self, request, context):  # type: ignore[no-untyped-def]
        command = Command("handling_class_set", Role.OFFICER, handling_class=request.handling_class)
        return await self.api.act(context, request, command)

    @rpc("PostFollowUp")
    async def PostFollowUp(self, request, context):  # type: ignore[no-untyped-def]
        return await self.api.act(
            context, request, Command("followed_up", Role.OFFICER, text=request.text)
        )

    @rpc("Resolve")
    async def Resolve(self, request, context):  # type: ignore[no-untyped-def]
        command = Command(
            "resolved", Role.OFFICER, text=request.text, evidence=tuple(request.evidence)
        )
        return await self.api.act(context, request, command)


class AdminServicer(officer_pb2_grpc.AdminServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    async def _admin_act(self, context, request, command):  # type: ignore[no-untyped-def]
        access.require_national_admin(await self.api.actor(context))
        return await self.api.act(context, request, command)

    @rpc("ListQueue")
    async def ListQueue(self, request, context):  # type: ignore[no-untyped-def]
        actor = await self.api.actor(context)
        page = await self.api.queries.queue(
            actor, request.state, request.page_size, request.page_token
        )
        return await self.api.page(page, actor)

    @rpc("Verify")
    async def Verify(self, request, context):  # type: ignore[no-untyped-def]
        command = Command("verified", Role.NATIONAL_ADMIN, institution_id=request.institution_id)
        return await self._admin_act(context, request, command)

    @rpc("Defer")
    async def Defer(self, request, context):  # type: ignore[no-untyped-def]
        command = Command("deferred", Role.NATIONAL_ADMIN, reason=request.reason)
        return await self._admin_act(context, request, command)

    @rpc("MarkNotAuthority")
    async def MarkNotAuthority(self, request, context):  # type: ignore[no-untyped-def]
        command = Command("not_authority", Role.NATIONAL_ADMIN, reason=request.reason)
        return await self._admin_act(context, request, command)

    @rpc("Archive")
    async def Archive(self, request, context):  # type: ignore[no-untyped-def]
        command = Command("archived", Role.NATIONAL_ADMIN, reason=request.reason)
        return await self._admin_act(context, request, command)

    @rpc("ListInstitutions")
    async def ListInstitutions(self, request, context):  # type: ignore[no-untyped-def]
        actor = await self.api.actor(context)
        if actor.role == Role.OFFICER:
            raise PermissionDenied("role officer may not list the directory")
        directory = self.api.directory()
        if request.parent_id and directory.get(request.parent_id) is None:
            require([Violation("parent_id", f"unknown institution {request.parent_id!r}")])
        if request.parent_id:
            found = directory.children(request.parent_id)
        else:
            found = [i for i in directory.all() if i.parent_id is None]
        if not actor.is_national_admin:
            found = [i for i in found if directory.is_within(i.id, actor.institution)]
        if request.kind:
            found = [i for i in found if i.kind == request.kind]
        found.sort(key=lambda i: i.id)
        skip, size = page_window(request.page_size, request.page_token, maximum=500)
        window = found[skip : skip + size]
        more = skip + size < len(found)
        return officer_pb2.ListInstitutionsResponse(
            institutions=[institution_view(i) for i in window],
            next_page_token=str(skip + size) if more else "",
        )

    @rpc("UpsertInstitution")
    async def UpsertInstitution(self, request, context):  # type: ignore[no-untyped-def]
        actor = await self.api.actor(context)
        record = request.institution
        institution = Institution(
            record.id,
            record.name,
            record.kind,
            record.parent_id or None,
            record.region_code or None,
            tuple(record.topics),
        )
        saved = await self.api.registry.upsert(
            institution, lambda existing: access.require_may_edit(actor, institution, existing)
        )
        return institution_view(saved)

    @rpc("ReloadRules")
    async def ReloadRules(self, request, context):  # type: ignore[no-untyped-def]
        access.require_national_admin(await self.api.actor(context))
        result = self.api.rules.reload()
        return officer_pb2.ReloadRulesResponse(
            reloaded=result.reloaded, version=result.version, rules=result.rules, error=result.error
        )


def register(api: Api, server: grpc.aio.Server) -> list[str]:
    officer_pb2_grpc.add_OfficerServiceServicer_to_server(OfficerServicer(api), server)
    officer_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(api), server)
    return ["lapor.v1.OfficerService", "lapor.v1.AdminService"]
