<?php

namespace System\Console;

defined('DS') or exit('No direct access.');

use System\Container;

class Console
{
    /** `websocket:run` runs the `run` method of the `command: websocket` in the container. */
    public static function run($arguments = [])
    {
        $arguments = is_array($arguments) ? $arguments : [$arguments];
        $parts = explode(':', $arguments[0] ?? 'help:run');
        $command = $parts[0];
        $method = $parts[1] ?? 'run';
        if (!Container::registered('command: ' . $command)) {
            throw new \Exception("Command not found: '" . implode(' ', $arguments) . "'");
        }
        $instance = Container::resolve('command: ' . $command);
        if (!is_callable([$instance, $method])) {
            throw new \Exception('Command method is not callable: ' . $method);
        }
        $instance->{$method}(array_slice($arguments, 1));
    }

    public static function options(array $argv)
    {
        $options = [];
        $arguments = [];
        foreach ($argv as $argument) {
            $argument = (string) $argument;
            if (strncmp($argument, '--', 2) === 0) {
                $equals = strpos($argument, '=');
                if ($equals === false) {
                    $options[substr($argument, 2)] = true;
                } else {
                    $options[substr($argument, 2, $equals - 2)] = substr($argument, $equals + 1);
                }
            } else {
                $arguments[] = $argument;
            }
        }
        return [$arguments, $options];
    }
}
