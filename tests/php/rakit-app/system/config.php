<?php

namespace System;

defined('DS') or exit('No direct access.');

class Config
{
    /** `Config::get('websocket')` or `Config::get('websocket.key')`. */
    public static function get($key, $default = null)
    {
        $parts = explode('.', $key, 2);
        $items = static::file($parts[0]);
        if (count($items) === 0) {
            return $default;
        }
        if (!isset($parts[1])) {
            return $items;
        }
        return array_key_exists($parts[1], $items) ? $items[$parts[1]] : $default;
    }

    /** The file's array, with the environment's (--env=NAME) merged over it. */
    public static function file($file)
    {
        $paths = [path('app') . 'config' . DS];
        if (isset($_SERVER['CLI']['ENV'])) {
            $paths[] = $paths[0] . $_SERVER['CLI']['ENV'] . DS;
        }
        $config = [];
        foreach ($paths as $dir) {
            if (is_file($path = $dir . $file . '.php')) {
                $config = array_merge($config, (array) require $path);
            }
        }
        return $config;
    }
}
