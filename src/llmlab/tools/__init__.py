"""Tool calling: Python functions as tools, the agent loop that runs them, built-in tools, and the
constrained call format that lets a small local model call tools reliably.

    >>> from llmlab import load_model
    >>> from llmlab.tools import agent, calculator
    >>> agent(load_model("smollm2"), tools=[calculator()]).run("What is 17 * 23?").answer  # doctest: +SKIP
"""

from .agent import Agent, AgentRun, Step, agent
from .builtin import builtin_tools, calculator, date_tools, file_reader, retrieval_tool
from .spec import tool_specs
from .tool import Tool, ToolResult, from_spec, tool

__all__ = ["Agent", "AgentRun", "Step", "Tool", "ToolResult", "agent", "builtin_tools", "calculator",
           "date_tools", "file_reader", "from_spec", "retrieval_tool", "tool", "tool_specs"]
