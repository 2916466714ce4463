"""The page of the review app: the queue (left), the slice view (middle), the findings
table, the sliders and Slicer's Segment Editor (right); ``cxr_*`` state keys, ``cxr-*`` ids."""

from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v
from trame_slicer.app.ui import SegmentEditorUI

__all__ = ["build_page"]


def build_page(app) -> None:
    """The page of ``app`` (a :class:`~CXRWeakLocApp.server.ReviewApp`), wired to its handlers
    and to trame-slicer's Segment Editor logic."""
    with VAppLayout(app.server, full_height=True, theme="dark") as layout:
        with v.VAppBar(density="compact"):
            v.VAppBarTitle("CXRWeakLoc review")
            html.Span("{{ cxr_progress }}", id="cxr-progress", classes="mx-4")
            v.VBtn("Previous", id="cxr-previous", click=app.previous_study,
                   disabled=("cxr_current <= 0",), prepend_icon="mdi-chevron-left")
            v.VBtn("Next", id="cxr-next", click=app.next_study,
                   disabled=("cxr_current < 0",), append_icon="mdi-chevron-right",
                   title="Save, mark reviewed and open the next study")
            v.VBtn("Save", id="cxr-save", click=app.save,
                   disabled=("cxr_current < 0",), prepend_icon="mdi-content-save")
            html.Span("{{ cxr_saved }}", id="cxr-saved", classes="mx-4 text-caption")
        with v.VNavigationDrawer(permanent=True, width=260, location="left"):
            _queue(app)
        with v.VNavigationDrawer(permanent=True, width=440, location="right"):
            _review(app)
            v.VDivider()
            with html.Div(classes="d-flex align-center px-2"):
                html.Span("Segment Editor", classes="text-subtitle-2 mr-auto")
                undo_redo = html.Div(classes="d-flex")
            # a finding's segment is the model's: erase its mask rather than delete it
            client.Style(".cxr-editor .mdi-delete-outline { display: none; }")
            with html.Div(style="height: 480px;", classes="cxr-editor"):
                editor_ui = SegmentEditorUI()
            with undo_redo:
                editor_ui.build_undo_redo_buttons()
        with v.VMain(), html.Div(style="height: 100%; position: relative;"):
            app.layout_manager.initialize_layout_grid(layout)
        html.Div(id="cxr-ready", v_if=("cxr_ready",), style="display: none;")
    app.editor_logic.set_ui(editor_ui)


def _queue(app) -> None:
    with html.Div(v_if=("cxr_engine.running",), classes="pa-2", id="cxr-engine"):
        html.Div("{{ cxr_engine.text }}", classes="text-caption")
        v.VProgressLinear(model_value=("cxr_engine.percent",), color="primary")
    html.Div("{{ cxr_engine.error }}", v_if=("cxr_engine.error",),
             classes="pa-2 text-error text-caption", id="cxr-engine-error")
    with v.VList(density="compact", id="cxr-queue"), v.VListItem(
            v_for="(study, index) in cxr_studies", key="study.stem",
            active=("index === cxr_current",), classes="cxr-study",
            click=(app.open_study, "[index]"), disabled=("!!study.error",),
            title=("study.stem",),
            subtitle=("study.error || study.status",)), v.Template(v_slot_append=True):
        v.VChip("{{ study.error ? 'failed' : study.status }}", size="x-small",
                color=("study.error ? 'error' : study.status === 'to review' ? "
                       "'grey' : study.status === 'edited' ? 'warning' : 'success'",))


def _review(app) -> None:
    with html.Div(classes="pa-2"):
        html.Div("{{ cxr_message }}", id="cxr-message", classes="text-caption mb-1")
        with v.VTable(density="compact", id="cxr-findings"):
            with html.Thead(), html.Tr():
                html.Th("Finding")
                html.Th("Probability")
                html.Th("Mask area")
            with html.Tbody(), html.Tr(
                    v_for="finding in cxr_findings", key="finding.name",
                    classes="cxr-finding", style="cursor: pointer;",
                    click=(app.select_finding, "[finding.name]"),
                    raw_attrs=[':class="{ \'bg-primary\': finding.name === cxr_selected }"']):
                html.Td("{{ finding.name }}{{ finding.edited ? ' (edited)' : '' }}")
                html.Td("{{ finding.probability }}")
                html.Td("{{ finding.area }}", classes="cxr-area")
        with html.Div(id="cxr-opacity"):
            v.VSlider(label="Heatmap opacity", v_model=("cxr_opacity",), min=0, max=1,
                      step=0.05, hide_details=True, density="compact")
        with html.Div(classes="d-flex align-center", id="cxr-threshold"):
            v.VSlider(label="Mask threshold", v_model=("cxr_threshold",),
                      min=("cxr_rule.low",), max=("cxr_rule.high",),
                      step=("cxr_rule.step",), disabled=("!cxr_rule.adjustable",),
                      hide_details=True, density="compact", thumb_label=True)
            v.VBtn("Measured", size="small", variant="tonal", id="cxr-measured",
                   click=app.measured_threshold, disabled=("!cxr_rule.adjustable",))
        html.Div("{{ cxr_rule.hint }}", classes="text-caption mb-1")
        with html.Div(id="cxr-window-level"):
            v.VSlider(label="Window", v_model=("cxr_window",), min=0,
                      max=("cxr_range[1] - cxr_range[0]",), hide_details=True,
                      density="compact")
            v.VSlider(label="Level", v_model=("cxr_level",), min=("cxr_range[0]",),
                      max=("cxr_range[1]",), hide_details=True, density="compact")
