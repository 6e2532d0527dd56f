"""The Home Assistant glue of the delivery part: imports complete backlog hours as
long-term statistics, converted to each statistic's unit.

Archive values are in the agent's unit (°C); the statistic is in the unit the
recorder keeps for the entity (°F on a US-customary install), so every value is
converted with Home Assistant's unit converters; a pair no converter knows is
skipped with a warning rather than mislabelled.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.components.recorder.models import StatisticData, StatisticMeanType
from homeassistant.components.recorder.statistics import async_import_statistics
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util, unit_conversion

from ..const import DOMAIN, LOGGER
from . import statistics
from .pipeline import Delivery

_CONVERTERS = tuple(
    cls
    for cls in vars(unit_conversion).values()
    if isinstance(cls, type)
    and issubclass(cls, unit_conversion.BaseUnitConverter)
    and cls is not unit_conversion.BaseUnitConverter
)


def unit_converter(
    source: str, target: str | None
) -> tuple[Callable[[float], float], str | None] | None:
    """(archive unit -> statistic unit, unit class), or None when no converter knows both."""
    if target is None:
        return (lambda value: value), None  # a unitless entity (pH)
    for cls in _CONVERTERS:
        if target in cls.VALID_UNITS and (source == target or source in cls.VALID_UNITS):
            return cls.converter_factory(source, target), cls.UNIT_CLASS
    if source == target:
        return (lambda value: value), None
    return None


def _statistic_unit(hass: HomeAssistant, entity_id: str, entry: er.RegistryEntry) -> str | None:
    # The unit the entity's states carry is the one the recorder compiles statistics in.
    if (state := hass.states.get(entity_id)) is not None:
        unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
        return unit if isinstance(unit, str) else None
    return entry.unit_of_measurement


async def import_due_hours(hass: HomeAssistant, delivery: Delivery) -> int:
    """Imports every complete hour still to import, then forgets them; returns how many."""
    due = statistics.due_hours(
        delivery.lineage.hours, dt_util.utcnow(), delivery.delivered_through, delivery.caught_up
    )
    if not due:
        return 0
    registry = er.async_get(hass)
    by_hour = await hass.async_add_executor_job(statistics.aggregate_hours, delivery.agent_dir, due)
    for hour in sorted(due):
        aggregates = by_hour[hour]
        # Per entity, in the statistic's unit (a series may change unit within an hour).
        converted: dict[str, tuple[statistics.Aggregate, str | None, str | None]] = {}
        for (sensor, quantity, unit), aggregate in aggregates.items():
            unique_id = f"{delivery.agent_id}_{sensor}_{quantity}"
            entity_id = registry.async_get_entity_id("sensor", DOMAIN, unique_id)
            entry = registry.async_get(entity_id) if entity_id else None
            if entity_id is None or entry is None:
                continue
            target = _statistic_unit(hass, entity_id, entry)
            conversion = unit_converter(unit, target)
            if conversion is None:
                LOGGER.warning(
                    "statistics of %s skipped: no conversion from %s to %s", entity_id, unit, target
                )
                continue
            convert, unit_class = conversion
            # Unit conversions are increasing affine maps: they commute with mean/min/max.
            total, _, _ = converted.get(entity_id, (statistics.Aggregate(), None, None))
            total.count += aggregate.count
            total.total += convert(aggregate.mean) * aggregate.count
            total.minimum = min(total.minimum, convert(aggregate.minimum))
            total.maximum = max(total.maximum, convert(aggregate.maximum))
            converted[entity_id] = (total, target, unit_class)
        for entity_id, (total, target, unit_class) in converted.items():
            async_import_statistics(
                hass,
                {
                    "mean_type": StatisticMeanType.ARITHMETIC,
                    "has_sum": False,
                    "name": None,
                    "source": "recorder",
                    "statistic_id": entity_id,
                    "unit_class": unit_class,
                    "unit_of_measurement": target,
                },
                [
                    StatisticData(
                        start=statistics.hour_start(hour),
                        mean=total.mean,
                        min=total.minimum,
                        max=total.maximum,
                    )
                ],
            )
    await delivery.forget_hours(due)
    return len(due)
